/* An example edgefleet backend in plain C: the smallest complete plugin, built out of tree
 * against the installed header alone (see README.md beside this file).
 *
 * Format "affine": the model file is text holding two numbers, `scale offset`; the model has one
 * float32 input and one float32 output of the same shape, y = scale * x + offset. It serves no
 * real model; it shows what each function of the ABI must do, who owns what, and how errors are
 * reported. A vendor runtime (TensorRT, OpenVINO, HailoRT, ...) replaces the arithmetic with its
 * engine and keeps the rest.
 */
#include <edgefleet/backend_plugin.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ef_backend {
  ef_backend_info info;
};

/* Immutable after load, so concurrent runs need no lock. */
struct ef_session {
  float scale;
  float offset;
};

static const char* const kFormats[] = {"affine"};
static const char* const kDevices[] = {"cpu"};
static const ef_operator kOperators[] = {{"", "Affine", 1, 1}};

static int32_t Fail(int32_t status, char* err, size_t err_size, const char* format, ...) {
  if (err != NULL && err_size > 0) {
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_size, format, args);
    va_end(args);
  }
  return status;
}

static void Apply(float scale, float offset, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = scale * x[i] + offset;
}

EF_BACKEND_EXPORT uint32_t edgefleet_backend_abi_version(void) {
  return EDGEFLEET_BACKEND_ABI_VERSION;
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_create(const char* options_json, ef_backend** backend,
                                                   char* err, size_t err_size) {
  (void)options_json; /* no options */
  ef_backend* made = calloc(1, sizeof(*made));
  if (made == NULL) return Fail(EF_LIMIT, err, err_size, "out of memory");
  made->info.name = "affine";
  made->info.version = "1.0.0";
  made->info.engine = "edgefleet example backend: y = scale * x + offset";
  made->info.formats = kFormats;
  made->info.format_count = 1;
  made->info.devices = kDevices;
  made->info.device_count = 1;
  made->info.min_opset = 1;
  made->info.max_opset = 1;
  made->info.operators = kOperators;
  made->info.operator_count = 1;
  *backend = made;
  return EF_OK;
}

EF_BACKEND_EXPORT const ef_backend_info* edgefleet_backend_describe(const ef_backend* backend) {
  return &backend->info;
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_self_test(ef_backend* backend, char* err,
                                                      size_t err_size) {
  (void)backend;
  const float x[2] = {3.0f, -1.0f};
  float y[2];
  Apply(2.0f, 1.0f, x, y, 2);
  if (y[0] != 7.0f || y[1] != -1.0f) {
    return Fail(EF_INTERNAL, err, err_size, "2 * [3, -1] + 1 gave [%g, %g]", y[0], y[1]);
  }
  return EF_OK;
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_load(ef_backend* backend, const char* model_path,
                                                 const ef_model_spec* spec,
                                                 const ef_session_options* options,
                                                 ef_session** session, char* err, size_t err_size) {
  (void)backend;
  (void)options;
  if (spec->input_count != 1 || spec->output_count != 1 || spec->inputs[0].dtype != EF_FLOAT32 ||
      spec->outputs[0].dtype != EF_FLOAT32) {
    return Fail(EF_UNSUPPORTED, err, err_size,
                "an affine model has one float32 input and one float32 output");
  }
  FILE* file = fopen(model_path, "r");
  if (file == NULL) {
    return Fail(EF_IO, err, err_size, "%s: %s", model_path, strerror(errno));
  }
  char text[256];
  const size_t n = fread(text, 1, sizeof(text) - 1, file);
  fclose(file);
  text[n] = '\0';
  char* end = NULL;
  const float scale = strtof(text, &end);
  const char* rest = end;
  const float offset = strtof(rest, &end);
  if (rest == text || end == rest) {
    return Fail(EF_UNSUPPORTED, err, err_size, "%s: expected two numbers, `scale offset`",
                model_path);
  }
  ef_session* made = malloc(sizeof(*made));
  if (made == NULL) return Fail(EF_LIMIT, err, err_size, "out of memory");
  made->scale = scale;
  made->offset = offset;
  *session = made;
  return EF_OK;
}

EF_BACKEND_EXPORT int32_t edgefleet_backend_run(ef_session* session, const ef_tensor* inputs,
                                                size_t input_count, const ef_output_sink* sink,
                                                char* err, size_t err_size) {
  if (input_count != 1) return Fail(EF_INVALID_ARGUMENT, err, err_size, "expected one input");
  const ef_tensor* x = &inputs[0];
  /* The output has the input's shape; the agent's buffer, exactly byte_size bytes. */
  const ef_tensor_spec y_spec = {"y", EF_FLOAT32, x->spec.shape, x->spec.rank};
  float* y = sink->allocate(sink->context, 0, &y_spec, x->byte_size);
  if (y == NULL) return Fail(EF_INTERNAL, err, err_size, "the agent refused the output");
  Apply(session->scale, session->offset, x->data, y, x->byte_size / sizeof(float));
  return EF_OK;
}

EF_BACKEND_EXPORT void edgefleet_backend_release_session(ef_session* session) { free(session); }

EF_BACKEND_EXPORT void edgefleet_backend_destroy(ef_backend* backend) { free(backend); }
