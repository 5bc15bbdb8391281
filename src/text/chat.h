/* The ModRWKV chat template: turns are "\x16{Role}: {text}\x17" (bytes 0x16/0x17 are World tokens 23/24, and
 * no other World token contains them, so each turn tokenizes on its own). Generation stops at token 24.
 *
 * Two spellings of the generation prompt exist:
 *   MRW_CHAT_V1_EVAL     "\x16User: {q}\x17\x16Assistant:"  ModRWKV v1 evaluation code and training data;
 *                        also the ASR prompt ("\x16Assistant:" right after the audio features)
 *   MRW_CHAT_MODEL_CARD  "\x16User: {q}\x17Assistant:"      the released models' cards (no \x16 before the
 *                        assistant's name)
 * Completed turns are the same in both. The text is not escaped: a 0x16/0x17 byte inside it acts as a
 * delimiter, as in the reference. */
#ifndef MRW_TEXT_CHAT_H
#define MRW_TEXT_CHAT_H

#include <stddef.h>

typedef enum { MRW_CHAT_V1_EVAL = 0, MRW_CHAT_MODEL_CARD = 1 } mrw_chat_style;
typedef enum { MRW_ROLE_SYSTEM = 0, MRW_ROLE_USER = 1, MRW_ROLE_ASSISTANT = 2 } mrw_chat_role;

typedef struct {
    mrw_chat_role role;
    const char *text; /* UTF-8, not necessarily NUL-terminated */
    size_t len;
} mrw_chat_msg;

/* "System" / "User" / "Assistant". */
const char *mrw_chat_role_name(mrw_chat_role role);

/* All writers below append to out[0..cap) like snprintf: the result is NUL-terminated when it fits, and the
 * return value is the full length (without the NUL) whether or not it fit. */

/* One completed turn: "\x16{Role}: {text}\x17". */
size_t mrw_chat_turn(mrw_chat_role role, const char *text, size_t len, char *out, size_t cap);
/* What follows the last turn to make the model answer: "\x16Assistant:" or "Assistant:". */
size_t mrw_chat_generation_prompt(mrw_chat_style style, char *out, size_t cap);
/* A whole prompt: every message as a turn, then the generation prompt if `add_generation_prompt`. */
size_t mrw_chat_prompt(mrw_chat_style style, const mrw_chat_msg *msgs, int n, int add_generation_prompt,
                       char *out, size_t cap);

#endif
