/* onnx.h - ONNX import and export (onnx_import.c, onnx_export.c) over the C that protoc-c
 * generates from third_party/onnx/onnx.proto; the internal entry the fuzz target calls. */
#ifndef SM_INTEROP_ONNX_H
#define SM_INTEROP_ONNX_H
#include "simile.h"
#include <stddef.h>

/* Largest ONNX file read (the parameter limit of a model is 512 MiB of floats). */
#define SM_ONNX_MAX_FILE_BYTES ((size_t)1 << 30)
/* Limits on a graph, checked before anything is built from it. */
#define SM_ONNX_MAX_NODES 20000
#define SM_ONNX_MAX_VALUES 100000
#define SM_ONNX_MAX_RANK 8

/* sm_model_import_onnx on bytes in memory; `name` names the source in messages. */
sm_status sm_onnx_import_buffer(sm_model **out, const unsigned char *data, size_t len, const char *name,
                                const sm_onnx_import_options *opt);

#endif
