/* Test-only shim for running Rust DLLs under wine 8, which lacks bcryptprimitives.dll's
 * ProcessPrng (Rust's std uses it for randomness). Placed beside the test program only; never
 * shipped. Forwards to RtlGenRandom (SystemFunction036 in advapi32). */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
