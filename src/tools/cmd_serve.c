/* modrwkv serve: the OpenAI-compatible HTTP server (src/server/, docs/SERVER.md). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"
#include "tools/common.h"
#include "tools/tools.h"

static const char *k_serve_usage =
    "usage: modrwkv serve -m MODEL [options]\n"
    "Serves the model over HTTP with an OpenAI-compatible API: POST /v1/chat/completions (text, image_url as a\n"
    "data URL, input_audio as base64 WAV; stream: true for server-sent events), POST /v1/completions,\n"
    "GET /v1/models, /health, /metrics (Prometheus text), and a chat page at /. Requests are queued and all\n"
    "active sequences advance together; a \"conversation_id\" (body field or X-Conversation-Id header) keeps a\n"
    "conversation's RNN state so later turns only evaluate their new messages. Stops on SIGINT / SIGTERM.\n\n"
    "      --host ADDR      numeric address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)\n"
    "      --port N         TCP port (default 8080; 0 = any free port, printed on stderr)\n"
    "      --port-file F    write the port number to F once listening (for scripts)\n"
    "      --name NAME      model id reported by /v1/models (default: the model file's name)\n"
    "      --parallel N     sequences decoded together (default 16)\n"
    "      --max-queue N    requests waiting for a slot before 429 (default 64)\n"
    "      --max-connections N  concurrent connections before 503 (default 128)\n"
    "      --max-body-mb N  request body limit in MiB before 413 (default 32)\n"
    "      --max-media-mb N limit for one decoded image or recording in MiB before 413 (default 16)\n"
    "      --max-tokens N   the largest max_tokens a request may ask for (default 4096)\n"
    "      --default-max-tokens N  max_tokens when a request gives none (default 256)\n"
    "      --max-prompt-tokens N   tokens one request may prefill (default 16384)\n"
    "      --max-conversations N   conversation states kept, least recently used dropped (default 256)\n"
    "      --timeout S      per-request limit in seconds, queueing included (default 600)\n"
    "      --client-timeout S  close a connection that sends nothing for S seconds (default 30)\n"
    "      --prefill-chunk N  prompt tokens evaluated between two decode steps, so a long prompt does not\n"
    "                       stall the running answers (default 128; 0 = whole prompts at once)\n"
    "      --no-batch       decode the active sequences one by one instead of in one batched pass\n"
    "      --allow-local-files  image_url / input_audio may name a file on this machine (trusted clients only)\n"
    "      --template T     'modrwkv' (\\x16User: ..\\x17\\x16Assistant:, default) or 'card' (..\\x17Assistant:)\n"
    "  -q, --quiet          no log lines\n" TOOL_MODEL_HELP
    "Multimodal models: --encoder PATH (v1 checkpoints), --compress K,S, --compress-weights FILE,\n"
    "--encoder-fast, as for `modrwkv chat`.\n";

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

int cmd_serve(int argc, char **argv) {
    const char *cmd = "serve";
    tool_model_opts mo = {0};
    mo.dtype = MRW_DT_AUTO;
    tool_media_opts media = {0};
    mrw_server_params p = mrw_server_params_default();
    p.model_name = NULL;
    int body_mb = 32, media_mb = 16, timeout = 600;
    tool_args a;
    tool_args_init(&a, argc, argv, cmd, k_serve_usage);
    const char *o;
    while (tool_next(&a, &o)) {
        if (!strncmp(o, "--host", 6)) p.host = tool_value(&a, o);
        else if (!strncmp(o, "--port-file", 11)) p.port_file = tool_value(&a, o);
        else if (!strncmp(o, "--port", 6)) tool_int(&a, o, 0, 65535, &p.port);
        else if (!strncmp(o, "--name", 6)) p.model_name = tool_value(&a, o);
        else if (!strncmp(o, "--parallel", 10)) tool_int(&a, o, 1, 1024, &p.parallel);
        else if (!strncmp(o, "--max-queue", 11)) tool_int(&a, o, 0, 1 << 20, &p.max_queue);
        else if (!strncmp(o, "--max-connections", 17)) tool_int(&a, o, 1, 1 << 16, &p.max_connections);
        else if (!strncmp(o, "--max-body-mb", 13)) tool_int(&a, o, 1, 4096, &body_mb);
        else if (!strncmp(o, "--max-media-mb", 14)) tool_int(&a, o, 1, 4096, &media_mb);
        else if (!strncmp(o, "--max-tokens", 12)) tool_int(&a, o, 1, 1 << 24, &p.max_tokens);
        else if (!strncmp(o, "--default-max-tokens", 20)) tool_int(&a, o, 1, 1 << 24, &p.default_max_tokens);
        else if (!strncmp(o, "--max-prompt-tokens", 19)) tool_int(&a, o, 1, 1 << 28, &p.max_prompt_tokens);
        else if (!strncmp(o, "--max-conversations", 19)) tool_int(&a, o, 1, 1 << 20, &p.max_conversations);
        else if (!strncmp(o, "--timeout", 9)) tool_int(&a, o, 1, 86400 * 7, &timeout);
        else if (!strncmp(o, "--client-timeout", 16)) tool_int(&a, o, 1, 3600, &p.client_timeout_s);
        else if (!strcmp(o, "--allow-local-files")) p.allow_local_files = 1;
        else if (!strcmp(o, "--no-batch")) p.batch_decode = 0;
        else if (!strncmp(o, "--prefill-chunk", 15)) tool_int(&a, o, 0, 1 << 20, &p.prefill_chunk);
        else if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) p.quiet = 1;
        else if (!strncmp(o, "--template", 10)) {
            const char *t = tool_value(&a, o);
            if (t && !strcmp(t, "card")) p.style = MRW_CHAT_MODEL_CARD;
            else if (t && strcmp(t, "modrwkv")) { tool_fail(cmd, "--template must be 'modrwkv' or 'card'"); return 2; }
        } else if (!strncmp(o, "--image", 7) || !strncmp(o, "--audio", 7)) {
            tool_fail(cmd, "%s is not a serve option: clients send media in their requests", o);
            return 2;
        } else if (!tool_media_option(&a, o, &media) && !tool_model_option(&a, o, &mo)) tool_unknown(&a, o);
    }
    if (a.failed) return 2;
    if (p.default_max_tokens > p.max_tokens) p.default_max_tokens = p.max_tokens;
    p.max_body = (size_t)body_mb << 20;
    p.max_media = (size_t)media_mb << 20;
    p.timeout_s = timeout;
    tool_session s;
    if (tool_session_open(cmd, &mo, &media, &s)) return 1;
    p.model = s.model;
    p.mm = s.mm;
    p.ctx = s.ctx;
    p.vocab = s.vocab;
    p.special = s.special;
    if (!p.model_name) {
        const char *slash = strrchr(mo.model, '/');
        p.model_name = slash ? slash + 1 : mo.model;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    p.stop = &g_stop;
    int rc = mrw_server_run(&p);
    tool_session_close(&s);
    return rc;
}
