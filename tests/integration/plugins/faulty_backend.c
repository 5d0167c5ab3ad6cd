/* Backend libraries the agent must refuse, one per FAULT (compiled by agent_plugin_test.cpp
 * against the installed header, like the example backend):
 *   FAULT_ABI        reports ABI version 99
 *   FAULT_NO_RUN     does not export edgefleet_backend_run
 *   FAULT_SELF_TEST  fails its self-test
 * Everything else is valid, so each library is refused for its one fault. */
#include <edgefleet/backend_plugin.h>

#include <stdio.h>
#include <stdlib.h>

#ifndef BACKEND_NAME
#error "compile with -DBACKEND_NAME=\"...\""
#endif

struct ef_backend {
  ef_backend_info info;
};

static const char* const kFormats[] = {"faulty"};
static const char* const kDevices[] = {"cpu"};

EF_BACKEND_EXPORT uint32_t edgefleet_backend_abi_version(void) {
#ifdef FAULT_ABI
  return 99;
#else
  return EDGEFLEET_BACKEND_ABI_VERSION;
#endif
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_create(const char* options_json, ef_backend** backend,
                                                   char* err, size_t err_size) {
  (void)options_json;
  (void)err;
  (void)err_size;
  static ef_backend the_backend;
  the_backend.info.name = BACKEND_NAME;
  the_backend.info.version = "0.1.0";
  the_backend.info.engine = "a backend the agent must refuse";
  the_backend.info.formats = kFormats;
  the_backend.info.format_count = 1;
  the_backend.info.devices = kDevices;
  the_backend.info.device_count = 1;
  the_backend.info.min_opset = 1;
  the_backend.info.max_opset = 1;
  *backend = &the_backend;
  return EF_OK;
}

EF_BACKEND_EXPORT const ef_backend_info* edgefleet_backend_describe(const ef_backend* backend) {
  return &backend->info;
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_self_test(ef_backend* backend, char* err,
                                                      size_t err_size) {
  (void)backend;
#ifdef FAULT_SELF_TEST
  snprintf(err, err_size, "the accelerator did not answer (device /dev/faulty0)");
  return EF_INTERNAL;
#else
  (void)err;
  (void)err_size;
  return EF_OK;
#endif
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_load(ef_backend* backend, const char* model_path,
                                                 const ef_model_spec* spec,
                                                 const ef_session_options* options,
                                                 ef_session** session, char* err, size_t err_size) {
  (void)backend;
  (void)spec;
  (void)options;
  (void)session;
  snprintf(err, err_size, "%s: this backend loads nothing", model_path);
  return EF_UNSUPPORTED;
}

#ifndef FAULT_NO_RUN
EF_BACKEND_EXPORT int32_t edgefleet_backend_run(ef_session* session, const ef_tensor* inputs,
                                                size_t input_count, const ef_output_sink* sink,
                                                char* err, size_t err_size) {
  (void)session;
  (void)inputs;
  (void)input_count;
  (void)sink;
  snprintf(err, err_size, "no session can exist");
  return EF_INTERNAL;
}
#endif

EF_BACKEND_EXPORT void edgefleet_backend_release_session(ef_session* session) { (void)session; }

EF_BACKEND_EXPORT void edgefleet_backend_destroy(ef_backend* backend) { (void)backend; }
