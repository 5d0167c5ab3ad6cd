/* edgefleet backend plugin ABI, version 1.
 *
 * A backend is a shared library that edgefleet-agent loads from its `backends_dir` at start. It
 * exports the functions declared below with C linkage; no C++ type crosses this boundary, so a
 * backend may be written in C, C++ or anything that can export C functions, and built with
 * another compiler or standard library than the agent. This header is the whole contract: it is
 * installed with the agent (include/edgefleet/backend_plugin.h) and a backend needs nothing else
 * from edgefleet to build.
 *
 * Loading. The agent dlopen()s every `*.so` in `backends_dir` (RTLD_NOW | RTLD_LOCAL), then:
 *   1. looks up every function below; a library missing one is refused;
 *   2. calls edgefleet_backend_abi_version(); another value than EDGEFLEET_BACKEND_ABI_VERSION
 *      refuses the library before any other function of it is called;
 *   3. calls edgefleet_backend_create() with the backend's options from the agent config;
 *   4. reads edgefleet_backend_describe() (name, version, formats, devices, operator table);
 *   5. calls edgefleet_backend_self_test(); a failure refuses the library;
 *   6. when the library exports it, reads edgefleet_backend_forms() (optional, see there).
 * A refused library is named in one log line with the reason, and the agent goes on with the
 * others. Two libraries describing the same backend name: the second is refused.
 *
 * Errors. Functions that can fail return an ef_status (EF_OK = 0) and write a NUL-terminated,
 * human-readable reason into the caller's buffer `err` of `err_size` bytes (truncated to fit;
 * `err` may be NULL when `err_size` is 0). The agent prefixes it with the backend's name and
 * prints it escaped, so it may contain any bytes. Functions never throw or abort on bad input.
 *
 * Ownership. Everything the agent passes in (paths, specs, tensors, option strings) is owned by
 * the agent and valid only for the duration of the call. Output tensors are written into buffers
 * the agent allocates (ef_output_sink), so no memory allocated by the plugin ever reaches the
 * agent. The ef_backend_info returned by describe, and everything it points to, is owned by the
 * backend and stays valid and unchanged until edgefleet_backend_destroy.
 *
 * Threads. create, describe, self_test and destroy are called from one thread. load and
 * release_session may be called from several threads at once. run may be called concurrently on
 * one session (the agent serves requests from a pool of threads): the backend must make that
 * safe (a pool of engine instances, or a lock); ef_session_options.parallel_runs says how many
 * runs the agent expects at once.
 */
#ifndef EDGEFLEET_BACKEND_PLUGIN_H_
#define EDGEFLEET_BACKEND_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any change to the functions or structs below; the agent loads only its own. */
#define EDGEFLEET_BACKEND_ABI_VERSION 1u

/* Exported functions need default visibility when the plugin is built with
 * -fvisibility=hidden (recommended, so nothing else leaks from the library). */
#if defined(__GNUC__)
#define EF_BACKEND_EXPORT __attribute__((visibility("default")))
#else
#define EF_BACKEND_EXPORT
#endif

typedef enum ef_status {
  EF_OK = 0,
  EF_INVALID_ARGUMENT = 1, /* the caller's input is wrong (tensor, option, model spec) */
  EF_UNSUPPORTED = 2,      /* the backend cannot run this model (format, operator, ...) */
  EF_IO = 3,               /* reading the model file failed */
  EF_LIMIT = 4,            /* a size or memory limit */
  EF_INTERNAL = 5          /* the engine failed */
} ef_status;

/* Element types; the values are ONNX's TensorProto.DataType numbers. */
typedef enum ef_dtype {
  EF_FLOAT32 = 1,
  EF_UINT8 = 2,
  EF_INT8 = 3,
  EF_INT16 = 5,
  EF_INT32 = 6,
  EF_INT64 = 7,
  EF_BOOL = 9, /* one byte per element, 0 or 1 */
  EF_FLOAT16 = 10,
  EF_FLOAT64 = 11
} ef_dtype;

/* A tensor's name, element type and shape. In a model spec, a dimension of -1 is dynamic. */
typedef struct ef_tensor_spec {
  const char* name;
  int32_t dtype; /* ef_dtype */
  const int64_t* shape;
  size_t rank;
} ef_tensor_spec;

/* An input tensor: row-major, little-endian, byte_size = element count x element size. */
typedef struct ef_tensor {
  ef_tensor_spec spec; /* concrete shape, no -1 */
  const void* data;
  size_t byte_size;
} ef_tensor;

/* One operator the backend runs, for opsets (or schema versions) min..max of the model's import
 * of `domain`. Only measured support should be claimed: the agent refuses a model before
 * download when its manifest lists an operator the table does not claim. */
typedef struct ef_operator {
  const char* domain; /* "" for the format's default domain (ai.onnx for ONNX) */
  const char* op;
  int32_t min_opset;
  int32_t max_opset;
} ef_operator;

/* A node shape the backend cannot run although it runs the operator: a node of `op` with more
 * than `max_outputs` outputs is refused, citing `why`. */
typedef struct ef_output_limit {
  const char* domain;
  const char* op;
  uint32_t max_outputs;
  const char* why;
} ef_output_limit;

/* What a backend measured for one form of an operator (ONNX): a node of `op` in the model's
 * import of `domain` at min_opset..max_opset whose form text is `form`. The text is computed
 * from the node and its graph by edgefleet (the grammar: README, "ONNX compatibility"; runtime/
 * onnx_forms.hpp), and a backend's table comes from running such nodes (edgefleet_measure_ops
 * --forms), not from typing it. */
typedef enum ef_form_verdict {
  EF_FORM_RUNS = 1,  /* every case of the form loaded and matched the reference */
  EF_FORM_FAILS = 2, /* a case of the form failed: the agent refuses it, citing `why` */
} ef_form_verdict;

typedef struct ef_form_claim {
  const char* domain; /* "" for the default domain */
  const char* op;
  int32_t min_opset;
  int32_t max_opset;
  const char* form;
  int32_t verdict; /* an ef_form_verdict */
  const char* why; /* for EF_FORM_FAILS, what failed; "" otherwise */
} ef_form_claim;

typedef struct ef_backend_info {
  const char* name;    /* [a-z0-9_-]{1,32}, e.g. "opencv"; what manifests name in `backends` */
  const char* version; /* SemVer of the engine, e.g. "4.6.0" (manifests match ranges on it) */
  const char* engine;  /* free text for logs and status, e.g. "OpenCV DNN 4.6.0" */
  const char* const* formats; /* model formats it loads: "onnx", "torchscript", "tflite", ... */
  size_t format_count;
  const char* const* devices; /* where it runs: "cpu", "gpu", "npu", ... */
  size_t device_count;
  int32_t min_opset; /* default-domain opsets (or schema versions) it imports */
  int32_t max_opset;
  const ef_operator* operators;
  size_t operator_count;
  const ef_output_limit* output_limits;
  size_t output_limit_count;
} ef_backend_info;

/* What the signed manifest says about the model being loaded. */
typedef struct ef_model_spec {
  const char* variant_id;
  const char* format;
  int32_t opset;
  const ef_tensor_spec* inputs;
  size_t input_count;
  const ef_tensor_spec* outputs;
  size_t output_count;
} ef_model_spec;

typedef struct ef_session_options {
  int32_t threads;       /* intra-op threads one run may use, >= 1 */
  int32_t parallel_runs; /* runs the agent may issue at once on this session, >= 1 */
  /* This backend's member of `backend_options` (a JSON object), to which the agent adds, for
   * each model load: "edgefleet_cache_dir", a directory (it may not exist yet) the backend may
   * use for what it derives from this model (an optimised graph, say), private to the slot the
   * model is in and removed when that slot gets another bundle; and "edgefleet_model_sha256",
   * the signed SHA-256 (64 lowercase hex) of the model file. A config cannot set these keys. */
  const char* options_json;
} ef_session_options;

/* Where run writes its outputs. For each declared output, in the order of ef_model_spec.outputs,
 * the backend calls `allocate` once with the output's real dtype and shape and the byte size of
 * its data; the agent returns a buffer of exactly that size, owned by the agent, into which the
 * backend writes the data before run returns. NULL means the agent refused (size over its limit,
 * or dtype/shape not what was declared): run must then return EF_LIMIT or EF_INTERNAL. */
typedef struct ef_output_sink {
  void* context;
  void* (*allocate)(void* context, size_t index, const ef_tensor_spec* spec, size_t byte_size);
} ef_output_sink;

typedef struct ef_backend ef_backend; /* opaque, owned by the backend */
typedef struct ef_session ef_session; /* opaque, owned by the backend */

/* The ABI version the library was built against: return EDGEFLEET_BACKEND_ABI_VERSION. */
EF_BACKEND_EXPORT uint32_t edgefleet_backend_abi_version(void);

/* Creates the backend. `options_json` is the agent config's `backend_options` object, keyed by
 * backend name ("{}" when the config has none): a backend reads its own member and ignores the
 * others. On success stores the backend in *backend. */
EF_BACKEND_EXPORT int32_t edgefleet_backend_create(const char* options_json, ef_backend** backend,
                                                   char* err, size_t err_size);

/* What the backend is and can run; never NULL for a created backend. */
EF_BACKEND_EXPORT const ef_backend_info* edgefleet_backend_describe(const ef_backend* backend);

/* Checks that the engine works on this box (e.g. builds and runs a tiny model and compares the
 * result). EF_OK or a reason. */
EF_BACKEND_EXPORT int32_t edgefleet_backend_self_test(ef_backend* backend, char* err,
                                                      size_t err_size);

/* Loads `model_path` (a file already verified against the signed manifest) as `spec` says. The
 * agent calls run only with inputs that match spec.inputs (names, dtypes, shapes with -1 filled
 * in), in that order. On success stores the session in *session. */
EF_BACKEND_EXPORT int32_t edgefleet_backend_load(ef_backend* backend, const char* model_path,
                                                 const ef_model_spec* spec,
                                                 const ef_session_options* options,
                                                 ef_session** session, char* err, size_t err_size);

/* Runs one inference: `inputs` in spec order, outputs through `sink`. */
EF_BACKEND_EXPORT int32_t edgefleet_backend_run(ef_session* session, const ef_tensor* inputs,
                                                size_t input_count, const ef_output_sink* sink,
                                                char* err, size_t err_size);

/* Frees a session; no run on it is in progress or will start. */
EF_BACKEND_EXPORT void edgefleet_backend_release_session(ef_session* session);

/* Optional (a library without it claims whole operators only): the form table, `*count` rows,
 * owned like ef_backend_info. The agent uses it for operators the operator table does not claim
 * at a model's opset: a node whose form is listed as running is accepted, one listed as failing
 * is refused with the row's reason, and one of a form not listed is "unknown" when some form of
 * the operator runs (decided after download by loading the model and its parity check) and
 * refused otherwise. */
EF_BACKEND_EXPORT const ef_form_claim* edgefleet_backend_forms(const ef_backend* backend,
                                                               size_t* count);

/* Frees the backend after all its sessions were released. */
EF_BACKEND_EXPORT void edgefleet_backend_destroy(ef_backend* backend);

#ifdef __cplusplus
}
#endif

#endif /* EDGEFLEET_BACKEND_PLUGIN_H_ */
