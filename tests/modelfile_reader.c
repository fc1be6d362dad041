/* A reader of the bac_ref model file (SPEC.md §6.0) in C99 without any library:
   it finds M and the coding prior, as a .bac decoder must (SPEC.md §6.1, §4.5, §10).
   Written from SPEC.md §6.0 alone; tests/test_model_file.py compiles and runs it.
   Usage: modelfile_reader MODEL.npz   Prints: "M m", "N n", "kind k", then for kind
   "table" "table C L" and "bits xor first last" (hex of the float64 bit patterns). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *buf;
static size_t len;

static uint64_t le(size_t off, int n) {              /* little-endian unsigned, n bytes */
    uint64_t v = 0;
    if (off + n > len) { fprintf(stderr, "truncated file\n"); exit(2); }
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | buf[off + i];
    return v;
}

typedef struct { char descr[16]; long shape[4]; int ndim; size_t data; uint64_t bytes; } Array;

/* Walk the zip's local file headers until the entry "name.npy" (stored, no data descriptor). */
static int find_entry(const char *name, size_t *data, uint64_t *size) {
    size_t off = 0, want = strlen(name);
    while (off + 30 <= len && le(off, 4) == 0x04034b50) {
        uint64_t flags = le(off + 6, 2), method = le(off + 8, 2);
        uint64_t csize = le(off + 18, 4), usize = le(off + 22, 4);
        size_t nlen = (size_t)le(off + 26, 2), elen = (size_t)le(off + 28, 2);
        size_t extra = off + 30 + nlen, e = extra;
        if (method != 0 || (flags & 8)) { fprintf(stderr, "entry not stored\n"); exit(2); }
        while (e + 4 <= extra + elen) {              /* zip64 extra field: sizes as uint64 */
            uint64_t id = le(e, 2), sz = le(e + 2, 2), p = e + 4;
            if (id == 1) {
                if (usize == 0xFFFFFFFFu) { usize = le(p, 8); p += 8; }
                if (csize == 0xFFFFFFFFu) { csize = le(p, 8); }
            }
            e += 4 + sz;
        }
        if (nlen == want + 4 && memcmp(buf + off + 30, name, want) == 0
            && memcmp(buf + off + 30 + want, ".npy", 4) == 0) {
            *data = extra + elen; *size = csize;
            return 1;
        }
        off = extra + elen + (size_t)csize;
    }
    return 0;
}

/* Parse the .npy header: 'descr' and 'shape' of the dict literal; C order only. */
static int read_array(const char *name, Array *a) {
    size_t d; uint64_t size;
    if (!find_entry(name, &d, &size)) return 0;
    if (memcmp(buf + d, "\x93NUMPY", 6) != 0) { fprintf(stderr, "%s: not .npy\n", name); exit(2); }
    int major = buf[d + 6];
    size_t hlen = (size_t)(major == 1 ? le(d + 8, 2) : le(d + 8, 4));
    size_t h = d + (major == 1 ? 10 : 12);
    char head[4096];
    if (hlen >= sizeof head) { fprintf(stderr, "header too long\n"); exit(2); }
    memcpy(head, buf + h, hlen); head[hlen] = 0;
    char *p = strstr(head, "'descr': '"), *q = strstr(head, "'shape': (");
    if (!p || !q || !strstr(head, "'fortran_order': False")) { fprintf(stderr, "bad header\n"); exit(2); }
    p += 10;
    size_t n = strcspn(p, "'");
    if (n >= sizeof a->descr) n = sizeof a->descr - 1;
    memcpy(a->descr, p, n); a->descr[n] = 0;
    a->ndim = 0;
    for (q += 10; *q != ')';) {
        if (*q == ',' || *q == ' ') { q++; continue; }
        if (a->ndim == 4) { fprintf(stderr, "too many dims\n"); exit(2); }
        a->shape[a->ndim++] = strtol(q, &q, 10);
    }
    a->data = h + hlen;
    a->bytes = size - (a->data - d);
    return 1;
}

/* A 0-d '<Un' array (n UTF-32LE code units, SPEC.md §6.0) as an ASCII string. */
static void read_text(const char *name, char *out, size_t cap) {
    Array a;
    if (!read_array(name, &a) || strncmp(a.descr, "<U", 2) != 0 || a.ndim != 0) {
        fprintf(stderr, "%s: missing or not text\n", name); exit(2);
    }
    size_t n = (size_t)strtol(a.descr + 2, NULL, 10), k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        uint64_t c = le(a.data + 4 * i, 4);
        if (c == 0) break;                           /* numpy pads with 0 code units */
        if (c > 127) { fprintf(stderr, "%s: not ASCII\n", name); exit(2); }
        out[k++] = (char)c;
    }
    out[k] = 0;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s MODEL.npz\n", argv[0]); return 2; }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    fseek(f, 0, SEEK_END); len = (size_t)ftell(f); fseek(f, 0, SEEK_SET);
    buf = malloc(len ? len : 1);
    if (!buf || fread(buf, 1, len, f) != len) { fprintf(stderr, "read error\n"); return 2; }
    fclose(f);
    Array w, g;                          /* M = g_s.deconv0.weight.shape[0], N = g_a.conv0's */
    if (!read_array("g_s.deconv0.weight", &w) || !read_array("g_a.conv0.weight", &g)
        || strcmp(w.descr, "<f4") != 0 || w.ndim != 4) { fprintf(stderr, "no weights\n"); return 2; }
    printf("M %ld\nN %ld\n", w.shape[0], g.shape[0]);
    char kind[64];
    read_text("prior.kind", kind, sizeof kind);
    printf("kind %s\n", kind);
    if (strcmp(kind, "table") == 0) {
        Array t;
        if (!read_array("prior.table", &t) || strcmp(t.descr, "<f8") != 0 || t.ndim != 2) {
            fprintf(stderr, "bad prior.table\n"); return 2;
        }
        uint64_t count = (uint64_t)t.shape[0] * (uint64_t)t.shape[1], x = 0;
        if (t.bytes != 8 * count) { fprintf(stderr, "table size\n"); return 2; }
        for (uint64_t i = 0; i < count; i++) x ^= le(t.data + 8 * i, 8) * (2 * i + 1);
        printf("table %ld %ld\n", t.shape[0], t.shape[1]);
        printf("bits %016llx %016llx %016llx\n", (unsigned long long)x,
               (unsigned long long)le(t.data, 8), (unsigned long long)le(t.data + 8 * (count - 1), 8));
    }
    free(buf);
    return 0;
}
