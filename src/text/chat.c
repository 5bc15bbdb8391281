/* The ModRWKV chat template (see chat.h). */
#include "text/chat.h"

#include <string.h>

const char *mrw_chat_role_name(mrw_chat_role role) {
    switch (role) {
    case MRW_ROLE_SYSTEM: return "System";
    case MRW_ROLE_USER: return "User";
    case MRW_ROLE_ASSISTANT: return "Assistant";
    }
    return "User";
}

/* Appends n bytes at out[*o], keeping room for the final NUL; *o counts the full length regardless. */
static void put(char *out, size_t cap, size_t *o, const char *s, size_t n) {
    if (*o < cap) {
        size_t room = cap - 1 - *o;
        memcpy(out + *o, s, n < room ? n : room);
    }
    *o += n;
}

static size_t terminate(char *out, size_t cap, size_t o) {
    if (cap) out[o < cap ? o : cap - 1] = 0;
    return o;
}

static void put_turn(char *out, size_t cap, size_t *o, mrw_chat_role role, const char *text, size_t len) {
    const char *name = mrw_chat_role_name(role);
    put(out, cap, o, "\x16", 1);
    put(out, cap, o, name, strlen(name));
    put(out, cap, o, ": ", 2);
    put(out, cap, o, text, len);
    put(out, cap, o, "\x17", 1);
}

static void put_generation_prompt(char *out, size_t cap, size_t *o, mrw_chat_style style) {
    if (style == MRW_CHAT_V1_EVAL) put(out, cap, o, "\x16", 1);
    put(out, cap, o, "Assistant:", 10);
}

size_t mrw_chat_turn(mrw_chat_role role, const char *text, size_t len, char *out, size_t cap) {
    size_t o = 0;
    put_turn(out, cap, &o, role, text, len);
    return terminate(out, cap, o);
}

size_t mrw_chat_generation_prompt(mrw_chat_style style, char *out, size_t cap) {
    size_t o = 0;
    put_generation_prompt(out, cap, &o, style);
    return terminate(out, cap, o);
}

size_t mrw_chat_prompt(mrw_chat_style style, const mrw_chat_msg *msgs, int n, int add_generation_prompt,
                       char *out, size_t cap) {
    size_t o = 0;
    for (int i = 0; i < n; i++) put_turn(out, cap, &o, msgs[i].role, msgs[i].text, msgs[i].len);
    if (add_generation_prompt) put_generation_prompt(out, cap, &o, style);
    return terminate(out, cap, o);
}
