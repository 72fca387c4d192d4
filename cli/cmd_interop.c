/* cmd_interop.c - `simile import` (an ONNX file into a model file) and `simile export` (a model's
 * embedding network as an ONNX file); docs/interop.md. */
#include "cli.h"
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* import's exit codes: a file simile cannot read or map is bad input (3), whatever the reason. */
static int import_exit(sm_status st) {
    switch (st) {
    case SM_ERR_FORMAT: case SM_ERR_UNSUPPORTED: case SM_ERR_SPEC: case SM_ERR_RANGE: case SM_ERR_MISMATCH:
    case SM_ERR_IO:
        return EXIT_INPUT;
    case SM_ERR_INVALID: case SM_ERR_NOTFOUND: return EXIT_USAGE;
    default: return cli_exit_code(st);
    }
}

static const char import_help[] =
    "usage: simile import FILE.onnx --out MODEL.smm [--embedding-layer NAME] [--input HxWxC] [--print-spec]\n"
    "Build a simile model from an ONNX file (weights from its initializers) and save it.  The\n"
    "nodes the embedding depends on are mapped onto simile layers (docs/interop.md has the\n"
    "operator table); NCHW weights become simile's NHWC layout.  A graph with an operator simile\n"
    "cannot map is refused with the operator, the node's name and its position (counted from 0),\n"
    "and nothing is written.\n\n"
    "  --out FILE              the model file to write (required)\n"
    "  --embedding-layer NAME  the tensor (or node) whose value is the embedding (default: the\n"
    "                          graph's first output); the nodes after it are left out\n"
    "  --input HxWxC           the input shape, where the file leaves it open (e.g. 224x224x3)\n"
    "  --print-spec            print the spec text the graph maps to on stdout (also when this\n"
    "                          build's layers cannot build it); --out is then optional\n\n"
    "exit codes: 0 written, 2 usage (bad option, input shape needed, unknown --embedding-layer),\n"
    "3 bad input (unreadable, corrupt or truncated file, unsupported operator or attribute),\n"
    "1 built without ONNX support.\n";

int cmd_import(int argc, char **argv) {
    enum { O_OUT = 1, O_EMB, O_INPUT, O_PRINT, O_HELP };
    static const struct option opts[] = {{"out", 1, 0, O_OUT}, {"embedding-layer", 1, 0, O_EMB},
                                         {"input", 1, 0, O_INPUT}, {"print-spec", 0, 0, O_PRINT},
                                         {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    int print_spec = 0;
    const char *cmd = "import", *out = NULL;
    sm_onnx_import_options io;
    memset(&io, 0, sizeof io);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_EMB: io.embedding = optarg; break;
        case O_INPUT: {
            char tail;
            if (sscanf(optarg, "%dx%dx%d%c", &io.h, &io.w, &io.c, &tail) != 3 || io.h < 1 || io.w < 1 || io.c < 1 ||
                io.h > 65536 || io.w > 65536 || io.c > 65536)
                return cli_usage_error(cmd, "--input '%s': give HxWxC, e.g. 224x224x3", optarg);
            break;
        }
        case O_PRINT: print_spec = 1; break;
        case 'h': case O_HELP: printf("%s", import_help); return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) return cli_usage_error(cmd, "give one ONNX file (simile import FILE.onnx --out MODEL.smm)");
    if (!out && !print_spec) return cli_usage_error(cmd, "--out MODEL.smm is required");
    if (!sm_onnx_available()) {
        fprintf(stderr, "simile import: simile was built without ONNX support (protobuf-c)\n");
        return EXIT_FAIL;
    }
    static char spec[65536 + 1];
    spec[0] = 0;
    if (print_spec) { io.spec_out = spec; io.spec_cap = sizeof spec; }
    sm_model *m = NULL;
    sm_status st = sm_model_import_onnx(&m, argv[optind], &io);
    if (print_spec && spec[0]) printf("%s", spec);
    if (st) {
        int code = import_exit(st);
        cli_report(cmd, st, NULL);
        return code;
    }
    if (!out) { sm_model_free(m); return EXIT_OK; }
    st = sm_model_save(m, out);
    if (st) { int code = cli_exit_code(st); cli_report(cmd, st, NULL); sm_model_free(m); return code; }
    int h, w, ch;
    sm_model_input_shape(m, &h, &w, &ch);
    fprintf(cli_text(), "imported %s: input %dx%dx%d, %lld parameters, embedding %d -> %s\n", argv[optind], h, w, ch,
            (long long)sm_model_num_params(m), sm_model_embedding_dim(m), out);
    sm_model_free(m);
    return EXIT_OK;
}

static const char export_help[] =
    "usage: simile export MODEL.smm --out FILE.onnx [--keep-bn]\n"
    "Write the model's embedding network as an ONNX file (opset 13): input \"input\", float\n"
    "(N, C, H, W) with a dynamic batch N, holding what simile embeds (pixels scaled to [0, 1],\n"
    "then normalised as in training: Fashion-MNIST's default is (x - 0.2860) / 0.3530); output\n"
    "\"embedding\" (N, d).  Batch norm is folded into the preceding conv or fc unless --keep-bn.\n"
    "The classifier head of a softmax model is not exported.\n\n"
    "  --out FILE   the ONNX file to write (required)\n"
    "  --keep-bn    keep batch norms as BatchNormalization nodes\n";

int cmd_export(int argc, char **argv) {
    enum { O_OUT = 1, O_KEEP, O_HELP };
    static const struct option opts[] = {{"out", 1, 0, O_OUT}, {"keep-bn", 0, 0, O_KEEP}, {"help", 0, 0, O_HELP},
                                         {0, 0, 0, 0}};
    const char *cmd = "export", *out = NULL;
    sm_onnx_export_options eo;
    memset(&eo, 0, sizeof eo);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_KEEP: eo.keep_bn = 1; break;
        case 'h': case O_HELP: printf("%s", export_help); return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) return cli_usage_error(cmd, "give one model file (simile export MODEL.smm --out FILE.onnx)");
    if (!out) return cli_usage_error(cmd, "--out FILE.onnx is required");
    if (!sm_onnx_available()) {
        fprintf(stderr, "simile export: simile was built without ONNX support (protobuf-c)\n");
        return EXIT_FAIL;
    }
    sm_model *m = NULL;
    sm_status st = sm_model_load(&m, argv[optind]);
    if (st) return cli_report(cmd, st, NULL);
    st = sm_model_export_onnx(m, out, &eo);
    if (st) { int code = cli_report(cmd, st, NULL); sm_model_free(m); return code; }
    fprintf(cli_text(), "exported %s -> %s (embedding %d%s)\n", argv[optind], out, sm_model_embedding_dim(m),
            eo.keep_bn ? ", batch norm kept" : ", batch norm folded");
    sm_model_free(m);
    return EXIT_OK;
}

static const char cut_help[] =
    "usage: simile cut MODEL --at L --out FILE\n"
    "Write the trunk of a model: its layers 1..L (a number or N.kind, as `simile info` lists\n"
    "them), with their weights, normalisation and class names.  If MODEL ends with an l2norm\n"
    "and layer L is not one, an l2norm is appended.  The classifier head is left out.\n"
    "Layer L must end a residual block if it is in one, and give a vector (after gap or fc).\n"
    "(docs/training.md, \"Embedding before the head\")\n";

int cmd_cut(int argc, char **argv) {
    enum { O_OUT = 1, O_AT, O_HELP };
    static const struct option opts[] = {{"out", 1, 0, O_OUT}, {"at", 1, 0, O_AT}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};
    const char *cmd = "cut", *out = NULL, *at = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, CLI_SHORTOPTS, opts, NULL)) != -1) {
        switch (c) {
        case O_OUT: out = optarg; break;
        case O_AT: at = optarg; break;
        case 'h': case O_HELP: printf("%s", cut_help); return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) return cli_usage_error(cmd, "give one model file (simile cut MODEL --at L --out FILE)");
    if (!at) return cli_usage_error(cmd, "--at L is required");
    if (!out) return cli_usage_error(cmd, "--out FILE is required");
    sm_model *m = NULL, *t = NULL;
    sm_status st = sm_model_load(&m, argv[optind]);
    if (st) return cli_report(cmd, st, NULL);
    int L = 0;
    const int bad = cli_layer_arg(cmd, m, "--at", at, 0, argv[optind], &L);
    if (bad) { sm_model_free(m); return bad; }
    if ((st = sm_model_cut(m, L, &t))) {
        sm_model_free(m);
        return cli_usage_error(cmd, "--at %s: %s", at, sm_errmsg());
    }
    st = sm_model_save(t, out);
    int rc = st ? cli_report(cmd, st, sm_model_errmsg(t)) : EXIT_OK;
    if (!st) fprintf(cli_text(), "saved %s: layers 1..%d of %s, embedding %d\n", out, L, argv[optind], sm_model_embedding_dim(t));
    sm_model_free(t);
    sm_model_free(m);
    return rc;
}
