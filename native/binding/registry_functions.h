// Functions exported to JavaScript over the process-wide session registry,
// the backend and the thread's statistics.
#pragma once

#include <napi.h>

namespace mqsa {

// Adds the registry functions to `exports`.
void export_registry_functions(Napi::Env env, Napi::Object exports);

}  // namespace mqsa
