/* A proxy dinput.dll that loads the ro-p2p DLL into an unmodified game client.
 *
 * The RO client imports dinput.dll by name; Windows searches the application's folder first
 * for DLLs that are not KnownDLLs, so this file, put into the game folder as dinput.dll, is
 * loaded instead of the system's. Its exports forward to the system's dinput.dll (loaded from
 * the system directory at the first call) and that first call also loads ro_p2p.dll (or
 * ro_p2p_ffi.dll) from the game folder, whose DllMain then hooks the game's Winsock imports.
 * Nothing happens in this DLL's own DllMain: no LoadLibrary under the loader lock.
 *
 * Build (32-bit game client):
 *   i686-w64-mingw32-gcc -shared -O2 -o dinput.dll dinput_proxy.c dinput.def
 */
#include <windows.h>

typedef HRESULT(WINAPI *create_fn)(HINSTANCE, DWORD, REFIID, void **, void *);
typedef HRESULT(WINAPI *create_ab_fn)(HINSTANCE, DWORD, void **, void *);

static HMODULE system_dinput;
static LONG p2p_loaded;

static void load_p2p(void) {
    if (InterlockedExchange(&p2p_loaded, 1)) return;
    wchar_t path[MAX_PATH];
    DWORD n = GetModuleFileNameW(NULL, path, MAX_PATH);
    while (n > 0 && path[n - 1] != L'\\' && path[n - 1] != L'/') n--;
    const wchar_t *names[] = {L"ro_p2p.dll", L"ro_p2p_ffi.dll"};
    for (int i = 0; i < 2; i++) {
        if (n + lstrlenW(names[i]) + 1 > MAX_PATH) return;
        lstrcpyW(path + n, names[i]);
        if (GetFileAttributesW(path) != INVALID_FILE_ATTRIBUTES && LoadLibraryW(path)) return;
    }
}

static FARPROC real(const char *name) {
    load_p2p();
    if (!system_dinput) {
        wchar_t path[MAX_PATH];
        UINT n = GetSystemDirectoryW(path, MAX_PATH);
        if (n == 0 || n + 12 > MAX_PATH) return NULL;
        lstrcpyW(path + n, L"\\dinput.dll");
        system_dinput = LoadLibraryW(path);
        if (!system_dinput) return NULL;
    }
    return GetProcAddress(system_dinput, name);
}

HRESULT WINAPI DirectInputCreateA(HINSTANCE inst, DWORD version, void **out, void *outer) {
    create_ab_fn f = (create_ab_fn)(void *)real("DirectInputCreateA");
    return f ? f(inst, version, out, outer) : E_FAIL;
}

HRESULT WINAPI DirectInputCreateW(HINSTANCE inst, DWORD version, void **out, void *outer) {
    create_ab_fn f = (create_ab_fn)(void *)real("DirectInputCreateW");
    return f ? f(inst, version, out, outer) : E_FAIL;
}

HRESULT WINAPI DirectInputCreateEx(HINSTANCE inst, DWORD version, REFIID iid, void **out,
                                   void *outer) {
    create_fn f = (create_fn)(void *)real("DirectInputCreateEx");
    return f ? f(inst, version, iid, out, outer) : E_FAIL;
}
