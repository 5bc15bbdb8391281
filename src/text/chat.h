/* The chat template's declarations are public (include/modrwkv.h, section "chat"). */
#ifndef MRW_TEXT_CHAT_H
#define MRW_TEXT_CHAT_H

#include "modrwkv.h"

#endif
