//! `ro-p2p-webrtc`: peer links over WebRTC data channels.
