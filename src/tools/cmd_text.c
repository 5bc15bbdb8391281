/* modrwkv tokenize */
#include <stdlib.h>
#include <string.h>

#include "tools/common.h"
#include "tools/tools.h"

static const char *k_usage =
    "usage: modrwkv tokenize (--text TEXT | -f FILE) [-m MODEL] [--vocab FILE] [--raw-bytes] [--count]\n"
    "Prints the token ids of the text, space-separated, on one line. The vocabulary is --vocab, else the\n"
    "model's (-m), else the installed RWKV World vocabulary.\n\n"
    "      --text TEXT      the text\n"
    "  -f, --file FILE      read the text from FILE ('-' = stdin)\n"
    "      --raw-bytes      accept text that is not valid UTF-8\n"
    "      --count          print only the number of tokens\n";

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize";
    tool_model_opts mo = {.dtype = MRW_DT_AUTO};
    const char *text = NULL, *file = NULL;
    int raw = 0, count = 0;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--text", 6)) text = tool_value(&a, o);
        else if (!strcmp(o, "-f") || !strncmp(o, "--file", 6)) file = tool_value(&a, o);
        else if (!strcmp(o, "--raw-bytes")) raw = 1;
        else if (!strcmp(o, "--count")) count = 1;
        else if (!tool_model_option(&a, o, &mo)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (!text == !file) return tool_fail(cmd, "give exactly one of --text TEXT or -f FILE"), 2;
    char *buf = NULL;
    size_t len;
    if (file) {
        if (tool_read_file(cmd, file, &buf, &len)) return 1;
        text = buf;
    } else {
        len = strlen(text);
    }
    mrw_model *m = NULL;
    mrw_vocab *v = NULL;
    int32_t *ids = NULL;
    int n = 0, rc = 1;
    if (mo.model && tool_load_model(cmd, &mo, &m, NULL)) goto out;
    if (tool_load_vocab(cmd, mo.vocab, m, &v)) goto out;
    if (tool_tokenize(cmd, v, text, len, raw, &ids, &n)) goto out;
    if (count) {
        printf("%d\n", n);
    } else {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    rc = 0;
out:
    free(ids);
    free(buf);
    mrw_vocab_free(v);
    mrw_model_free(m);
    return rc;
}
