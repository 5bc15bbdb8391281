/* The server's strict base64 decoder (src/server/server.c): RFC 4648 vectors with and without padding,
 * every kind of invalid input, the size limit, and a round trip of all byte values. */
#include "server/server.h"
#include "test.h"

static int dec(const char *in, size_t max, char *out, size_t *n, int *too_big) {
    unsigned char *o = NULL;
    int rc = mrw_base64_decode(in, strlen(in), max, &o, n, too_big);
    if (!rc) {
        memcpy(out, o, *n);
        out[*n] = 0;
    }
    free(o);
    return rc;
}

static const char k_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int main(void) {
    const char *vec[][2] = {{"", ""}, {"Zg==", "f"}, {"Zm8=", "fo"}, {"Zm9v", "foo"}, {"Zm9vYg==", "foob"},
                            {"Zm9vYmE=", "fooba"}, {"Zm9vYmFy", "foobar"}, {"Zg", "f"}, {"Zm8", "fo"}};
    char out[64];
    size_t n;
    int big;
    for (size_t i = 0; i < sizeof vec / sizeof *vec; i++) {
        int rc = dec(vec[i][0], 1 << 20, out, &n, &big);
        CHECKF(rc == 0 && n == strlen(vec[i][1]) && !strcmp(out, vec[i][1]), "'%s'", vec[i][0]);
    }
    const char *bad[] = {"Z", "Zm9v Yg==", "Zm9v\nYg==", "Zm9vYg=", "Zm9vY===", "Zm=9", "Zh==", "Zm9=",
                         "Zm9vYg==Zg==", "@@@@", "Zm9v-_", "=", "===="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = dec(bad[i], 1 << 20, out, &n, &big);
        CHECKF(rc == -1 && !big, "'%s' accepted", bad[i]);
    }
    CHECK(dec("Zm9vYmFy", 5, out, &n, &big) == -1 && big == 1); /* 6 bytes over a limit of 5 */
    CHECK(dec("Zm9vYmFy", 6, out, &n, &big) == 0 && n == 6);
    /* all 256 byte values */
    unsigned char raw[256];
    char enc[400];
    size_t e = 0;
    for (int i = 0; i < 256; i++) raw[i] = (unsigned char)i;
    for (int i = 0; i < 256; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (i + 1 < 256 ? (unsigned)raw[i + 1] << 8 : 0) | (i + 2 < 256 ? raw[i + 2] : 0);
        enc[e++] = k_b64[v >> 18 & 63];
        enc[e++] = k_b64[v >> 12 & 63];
        enc[e++] = i + 1 < 256 ? k_b64[v >> 6 & 63] : '=';
        enc[e++] = i + 2 < 256 ? k_b64[v & 63] : '=';
    }
    enc[e] = 0;
    unsigned char *o = NULL;
    CHECK(mrw_base64_decode(enc, e, 1 << 20, &o, &n, &big) == 0 && n == 256 && !memcmp(o, raw, 256));
    free(o);
    TEST_MAIN_END();
}
