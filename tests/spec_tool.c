/* spec_tool.c - test-only helper: `spec_tool SPEC H W C` builds a model from the spec text with
 * the model parser (sm_model_create) and exits 0 ("ok"), or 1 with the parser's message.  The
 * ONNX tests use it to ask whether this build's layers have a construct (residual blocks) before
 * testing an import that needs it.  Not a CTest test itself (not named test_*). */
#include "simile.h"
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: spec_tool SPEC H W C\n"); return 2; }
    sm_model *m = NULL;
    sm_status st = sm_model_create(&m, argv[1], atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), 1);
    if (st) { printf("%s\n", sm_errmsg()); return 1; }
    printf("ok\n");
    sm_model_free(m);
    return 0;
}
