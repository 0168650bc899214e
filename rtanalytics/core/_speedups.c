/*
 * The ingest hot path in C: validates the common case of a point dict and appends it to the
 * columns of a PointBatch. Anything out of the ordinary -- a name or tag set not seen valid
 * before, a type conflict, a `unique` value, a string timestamp, a `window`, any error -- is
 * left to the Python parser (rtanalytics/core/metrics.py), which remains the reference: the
 * tests run both paths on the same inputs and require the same batch.
 *
 * fast_parse(points, now, latest, oldest, table, series_cache, known_types, types_by_value,
 *            skip_type, count_type, index, names, types, tags, series, timestamps, values)
 *   -> list[int], the positions it did not take.
 * series_cache maps (name, tag key 1, tag value 1, ...) in the order a client sent them to
 * (canonical tags, series key), for series the Python parser has seen valid; any other is
 * left to it. `table` (a capsule from dict_series_table(), not the one parse_json uses)
 * remembers what series_cache said, by the name and tag strings as sent (see IdRecord).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static PyObject *k_name, *k_type, *k_value, *k_tags, *k_timestamp, *k_window, *empty_tuple;

/* The PointBatch columns both parsers append to (PointBatch.native_columns(), in that order):
   seven lists, then two bytearrays that take each appended point's timestamp and value as
   doubles (the store reads them with np.frombuffer instead of converting the lists). */
/* The batch columns a parser appends to. timestamps and values NULL: the points' floats are
   written to the packed columns only (parse_json; the batch makes the float objects if
   anything asks for them). */
typedef struct {
    PyObject *index, *names, *types, *tags, *series, *timestamps, *values, *packed_ts, *packed_values;
    Py_ssize_t packed_at, packed_room, packed_n; /* doubles there before the call, room, written */
} Columns;

/* Positions 0, 1, 2, ... as int objects made once: a batch's index column is the same
   numbers request after request. */
static PyObject **positions;
static Py_ssize_t positions_len;

static PyObject *
position(Py_ssize_t i)
{
    if (i >= positions_len) {
        Py_ssize_t len = positions_len ? positions_len : 1024;
        while (len <= i)
            len *= 2;
        PyObject **grown = PyMem_Realloc(positions, len * sizeof(PyObject *));
        if (grown == NULL)
            return PyErr_NoMemory();
        for (Py_ssize_t k = positions_len; k < len; k++) {
            grown[k] = PyLong_FromSsize_t(k);
            if (grown[k] == NULL) {
                positions = grown;
                positions_len = k;
                return NULL;
            }
        }
        positions = grown;
        positions_len = len;
    }
    return Py_NewRef(positions[i]);
}

/* A float object for x: `given` itself when it is one (a point dict's own value), else a new one. */
static inline PyObject *
float_of(PyObject *given, double x)
{
    if (given != NULL && PyFloat_CheckExact(given))
        return Py_NewRef(given);
    return PyFloat_FromDouble(x);
}

/* Room for `extra` more items in a column without a resize on each append. */
static int
reserve(PyObject *list, Py_ssize_t extra)
{
    PyListObject *l = (PyListObject *)list;
    Py_ssize_t need = Py_SIZE(l) + extra;
    if (need <= l->allocated)
        return 0;
    PyObject **items = PyMem_Realloc(l->ob_item, need * sizeof(PyObject *));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    l->ob_item = items;
    l->allocated = need;
    return 0;
}

static int
columns_reserve(Columns *c, Py_ssize_t extra)
{
    c->packed_at = PyByteArray_GET_SIZE(c->packed_ts) / 8;
    c->packed_room = extra;
    c->packed_n = 0;
    PyObject *lists[] = {c->index, c->names, c->types, c->tags, c->series, c->timestamps, c->values};
    for (int k = 0; k < 7; k++)
        if (lists[k] != NULL && reserve(lists[k], extra) < 0)
            return -1;
    if (PyByteArray_Resize(c->packed_ts, (c->packed_at + extra) * 8) < 0 ||
        PyByteArray_Resize(c->packed_values, (c->packed_at + extra) * 8) < 0)
        return -1;
    return 0;
}

/* The packed columns cut to what was written (always called once columns_reserve was). */
static int
columns_done(Columns *c)
{
    Py_ssize_t size = (c->packed_at + (c->packed_n > 0 ? c->packed_n : 0)) * 8;
    if (PyByteArray_Resize(c->packed_ts, size) < 0 || PyByteArray_Resize(c->packed_values, size) < 0)
        return -1;
    return 0;
}

/* list.append(item), stealing the reference; a store and a size bump while there is room. */
static inline int
push(PyObject *list, PyObject *item)
{
    PyListObject *l = (PyListObject *)list;
    Py_ssize_t size = Py_SIZE(l);
    if (size < l->allocated) {
        l->ob_item[size] = item;
        Py_SET_SIZE(l, size + 1);
        return 0;
    }
    int bad = PyList_Append(list, item);
    Py_DECREF(item);
    return bad;
}

static int
append_point(Columns *c, Py_ssize_t i, PyObject *name, PyObject *mtype, PyObject *tags, PyObject *series,
             double ts, PyObject *ts_obj, double v, PyObject *v_obj)
{
    int floats = c->timestamps != NULL;
    PyObject *idx = position(i);
    PyObject *tsv = floats ? float_of(ts_obj, ts) : NULL;
    PyObject *val = floats ? float_of(v_obj, v) : NULL;
    if (idx == NULL || (floats && (tsv == NULL || val == NULL))) {
        Py_XDECREF(idx);
        Py_XDECREF(tsv);
        Py_XDECREF(val);
        return -1;
    }
    if (c->packed_n < c->packed_room) {
        Py_ssize_t at = (c->packed_at + c->packed_n++) * 8;
        memcpy(PyByteArray_AS_STRING(c->packed_ts) + at, &ts, 8);
        memcpy(PyByteArray_AS_STRING(c->packed_values) + at, &v, 8);
    } else if (!floats) { /* cannot happen (room for every point is made first) */
        Py_DECREF(idx);
        PyErr_SetString(PyExc_SystemError, "parse_json: no room left in the packed columns");
        return -1;
    } else {
        c->packed_room = c->packed_n = -1; /* cannot happen either; the packed columns are dropped
                                             below, and the float lists are whole */
    }
    int bad = push(c->index, idx) | push(c->names, Py_NewRef(name)) | push(c->types, Py_NewRef(mtype)) |
              push(c->tags, Py_NewRef(tags)) | push(c->series, Py_NewRef(series));
    if (floats)
        bad |= push(c->timestamps, tsv) | push(c->values, val);
    return bad;
}

/* ---- JSON bytes straight to batch columns ----------------------------------------------------
 *
 * parse_json(body, now, latest, oldest, table, series_cache, known_types, types_by_value,
 *            skip_type, count_type, max_points, index, names, types, tags, series, timestamps,
 *            values, packed_ts, packed_values) -> None | (count, slow)
 *
 * timestamps and values may both be None: the points' floats then go to the packed columns
 * only (PointBatch.defer_floats).
 *
 * For a body of the plain shape {"metrics": [point, ...]} it scans the bytes once and appends
 * the ordinary points to the columns, as fast_parse does for dicts, without building a Python
 * object per point. `slow` lists (position, start, end) of the points it leaves to the Python
 * parser: their bytes are body[start:end], which orjson decodes to what a whole-body decode
 * gives them. None: not the plain shape, or not valid JSON as far as the scan can tell; the
 * caller then decodes the whole body with orjson, which says what is wrong.
 *
 * Series already seen valid are found in `table` (a capsule from series_table()) by the raw
 * bytes of the name and of the tags object as sent (the same series sent with other spacing or
 * tag order is another record for the same series); a miss builds the strings once and asks series_cache (the
 * Python parser's (name, k1, v1, ...) -> (tags, key) dict) before remembering them here.
 */

/* The series tables of both parsers: open addressing on a 64-bit hash, at most half full.
   Records are of the parser's kind (Record here, IdRecord for point dicts); the table knows
   how to drop them. Each parser's capsule has its own name, so neither takes the other's. */
typedef struct {
    uint64_t hash;
    void *rec;
} Slot;

typedef struct {
    Slot *slots;
    Py_ssize_t cap, used;
    void (*drop)(void *rec);
} Table;

#define TABLE_LIMIT 200000
#define MAX_NESTING 1100 /* past orjson's own limit of 1024: deeper is invalid either way */

static void
table_clear(Table *t)
{
    for (Py_ssize_t i = 0; i < t->cap; i++)
        if (t->slots[i].rec)
            t->drop(t->slots[i].rec);
    memset(t->slots, 0, sizeof(Slot) * t->cap);
    t->used = 0;
}

static void
table_free(PyObject *capsule)
{
    Table *t = PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule));
    if (t == NULL)
        return;
    table_clear(t);
    PyMem_Free(t->slots);
    PyMem_Free(t);
}

static PyObject *
table_new(const char *name, void (*drop)(void *rec))
{
    Table *t = PyMem_Calloc(1, sizeof(Table));
    if (t == NULL)
        return PyErr_NoMemory();
    t->cap = 1024;
    t->drop = drop;
    t->slots = PyMem_Calloc(t->cap, sizeof(Slot));
    if (t->slots == NULL) {
        PyMem_Free(t);
        return PyErr_NoMemory();
    }
    PyObject *capsule = PyCapsule_New(t, name, table_free);
    if (capsule == NULL) {
        PyMem_Free(t->slots);
        PyMem_Free(t);
    }
    return capsule;
}

/* Room for one more record (first clearing a table at its bound, like the Python parser's
   caches): 0, or -1 with an error set. */
static int
table_room(Table *t)
{
    if (t->used >= TABLE_LIMIT)
        table_clear(t);
    if ((t->used + 1) * 2 <= t->cap)
        return 0;
    Py_ssize_t old_cap = t->cap;
    Slot *old = t->slots;
    Slot *slots = PyMem_Calloc(old_cap * 2, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->slots = slots;
    t->cap = old_cap * 2;
    Py_ssize_t mask = t->cap - 1;
    for (Py_ssize_t i = 0; i < old_cap; i++) {
        if (old[i].rec == NULL)
            continue;
        Py_ssize_t j = (Py_ssize_t)(old[i].hash & mask);
        while (slots[j].rec != NULL)
            j = (j + 1) & mask;
        slots[j] = old[i];
    }
    PyMem_Free(old);
    return 0;
}

/* The record a later lookup of `hash` will most likely compare (the slot holding that hash:
   the home slot holds another series a third of the time, at the table's load); NULL if none.
   Only slots are read, for prefetching. */
static inline void *
table_likely(const Table *t, uint64_t hash)
{
    Py_ssize_t mask = t->cap - 1;
    for (Py_ssize_t i = (Py_ssize_t)(hash & mask);; i = (i + 1) & mask) {
        const Slot *slot = &t->slots[i];
        if (slot->rec == NULL || slot->hash == hash)
            return slot->rec;
    }
}

/* A series as sent: the bytes of its name and of its tags object, text as it came. */
typedef struct {
    PyObject *name, *tags, *key;
    Py_ssize_t name_len, tags_len;
    char bytes[];
} Record;

static void
record_drop(void *rec)
{
    Record *r = rec;
    Py_DECREF(r->name);
    Py_DECREF(r->tags);
    Py_DECREF(r->key);
    PyMem_Free(r);
}

static PyObject *
series_table(PyObject *self, PyObject *unused)
{
    return table_new("rtanalytics.series_table", record_drop);
}

/* A hash of some bytes, eight at a time (multiply-xorshift; not cryptographic: a collision only
   costs a memcmp). */
static inline uint64_t
bytes_hash(uint64_t h, const char *s, Py_ssize_t n)
{
    h ^= (uint64_t)n * 0x9E3779B97F4A7C15ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 29;
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, s + i, (size_t)(n - i));
        h = (h ^ w) * 0x94D049BB133111EBULL;
        h ^= h >> 32;
    }
    return h;
}

static inline Slot *
table_find(Table *t, uint64_t hash, const char *name, Py_ssize_t name_len, const char *tags, Py_ssize_t tags_len)
{
    Py_ssize_t mask = t->cap - 1;
    for (Py_ssize_t i = (Py_ssize_t)(hash & mask);; i = (i + 1) & mask) {
        Slot *slot = &t->slots[i];
        Record *r = slot->rec;
        if (r == NULL)
            return slot;
        if (slot->hash == hash && r->name_len == name_len && r->tags_len == tags_len &&
            memcmp(r->bytes, name, name_len) == 0 && memcmp(r->bytes + name_len, tags, tags_len) == 0)
            return slot;
    }
}

/* Both cache lines of the record a later lookup of `hash` will compare: a JSON series' header
   and the bytes of its name and tags object (~120 bytes in the workload; the second line's miss
   showed up in memcmp), or a dict series' header and string pointers (~80 bytes). */
static inline void
prefetch_record(const Table *t, uint64_t hash)
{
    const char *r = table_likely(t, hash);
    if (r != NULL) {
        __builtin_prefetch(r);
        __builtin_prefetch(r + 64);
    }
}

/* Remember a series; the record takes new references. */
static Record *
table_put(Table *t, uint64_t hash, const char *name_at, Py_ssize_t name_len, const char *tags_at,
          Py_ssize_t tags_len, PyObject *name, PyObject *tags, PyObject *key)
{
    if (table_room(t) < 0)
        return NULL;
    Slot *slot = table_find(t, hash, name_at, name_len, tags_at, tags_len);
    Record *r = PyMem_Malloc(sizeof(Record) + name_len + tags_len);
    if (r == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(r->bytes, name_at, name_len);
    memcpy(r->bytes + name_len, tags_at, tags_len);
    r->name_len = name_len;
    r->tags_len = tags_len;
    Py_INCREF(name);
    Py_INCREF(tags);
    Py_INCREF(key);
    r->name = name;
    r->tags = tags;
    r->key = key;
    slot->hash = hash;
    slot->rec = r;
    t->used++;
    return r;
}

/* Remember what the Python parser's cache says of a series: `entry` is its (tags, key). */
static Record *
remember(Table *t, uint64_t hash, const char *name_at, Py_ssize_t name_len, const char *tags_at,
         Py_ssize_t tags_len, PyObject *name, PyObject *entry)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "series cache entries are (tags, key) pairs");
        return NULL;
    }
    return table_put(t, hash, name_at, name_len, tags_at, tags_len, name, PyTuple_GET_ITEM(entry, 0),
                     PyTuple_GET_ITEM(entry, 1));
}

typedef struct {
    const char *p, *end;
} Scan;

static inline __attribute__((always_inline)) void
ws(Scan *s)
{
    while (s->p < s->end && (unsigned char)*s->p <= ' ' &&
           (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* A string at s->p (the opening quote): its bytes without quotes; *escaped when it holds a
   backslash escape. 0 on success, -1 when it is not a well-formed string. */
static inline __attribute__((always_inline)) int
str_span(Scan *s, const char **start, Py_ssize_t *len, int *escaped)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    const unsigned char *q = (const unsigned char *)++s->p, *end = (const unsigned char *)s->end;
    *escaped = 0;
    for (;;) {
#ifdef __SSE2__
        /* 16 bytes at a time to the first quote, backslash or control character (most of a
           body's strings are names, tags and types of 3 to 20 bytes); the byte loop below
           finishes the last 15 bytes of the body. */
        while (end - q >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)q);
            __m128i hit = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')), _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x));
            int mask = _mm_movemask_epi8(hit);
            if (mask) {
                q += __builtin_ctz((unsigned)mask);
                break;
            }
            q += 16;
        }
#endif
        while (q < end && *q != '"' && *q != '\\' && *q >= 0x20)
            q++;
        if (q >= end || *q < 0x20)
            return -1;
        if (*q == '"')
            break;
        *escaped = 1; /* a backslash: skip what it escapes */
        if (q + 1 >= end)
            return -1;
        q += 2;
    }
    *start = s->p;
    *len = (const char *)q - s->p;
    s->p = (const char *)q + 1;
    return 0;
}

/* A JSON number at s->p: its span, and whether it has a fraction or exponent. -1: malformed. */
static inline int
num_span(Scan *s, const char **start, Py_ssize_t *len, int *is_float)
{
    const char *q = s->p;
    *start = q;
    *is_float = 0;
    if (q < s->end && *q == '-')
        q++;
    if (q >= s->end)
        return -1;
    if (*q == '0') {
        q++;
    } else if (*q >= '1' && *q <= '9') {
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    } else {
        return -1;
    }
    if (q < s->end && *q == '.') {
        *is_float = 1;
        q++;
        if (q >= s->end || *q < '0' || *q > '9')
            return -1;
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < s->end && (*q == 'e' || *q == 'E')) {
        *is_float = 1;
        q++;
        if (q < s->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= s->end || *q < '0' || *q > '9')
            return -1;
        while (q < s->end && *q >= '0' && *q <= '9')
            q++;
    }
    *len = q - *start;
    s->p = q;
    return 0;
}

/* The number's value as Python's float(orjson.loads(text)) gives it; 0 when it cannot say
   (too long, or not finite), so that the point goes to the Python parser. */
static int
num_value(const char *start, Py_ssize_t len, int is_float, double *out)
{
    char buf[72];
    if (!is_float) {
        Py_ssize_t digits = len - (start[0] == '-');
        if (digits > 18)
            return 0;
        long long v = 0;
        for (Py_ssize_t i = start[0] == '-'; i < len; i++)
            v = v * 10 + (start[i] - '0');
        *out = (double)(start[0] == '-' ? -v : v);
        return 1;
    }
    {
        /* Clinger's fast path: at most 15 digits make an exact integer mantissa, and 10^k for
           k <= 22 is exact, so one multiplication or division rounds once, correctly -- the
           double that any correct parser (orjson's included) gives. */
        const char *q = start, *stop = start + len;
        int negative = *q == '-';
        q += negative;
        uint64_t mantissa = 0;
        int digits = 0, scale = 0;
        for (; q < stop && *q >= '0' && *q <= '9'; q++, digits++)
            mantissa = mantissa * 10 + (uint64_t)(*q - '0');
        if (q < stop && *q == '.')
            for (q++; q < stop && *q >= '0' && *q <= '9'; q++, digits++, scale--)
                mantissa = mantissa * 10 + (uint64_t)(*q - '0');
        int exponent = 0, exp_negative = 0, exp_digits = 0;
        if (q < stop && (*q == 'e' || *q == 'E')) {
            q++;
            if (q < stop && (*q == '+' || *q == '-'))
                exp_negative = *q++ == '-';
            for (; q < stop && *q >= '0' && *q <= '9' && exp_digits < 4; q++, exp_digits++)
                exponent = exponent * 10 + (*q - '0');
        }
        scale += exp_negative ? -exponent : exponent;
        static const double powers[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                          1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                          1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
        if (q == stop && digits <= 15 && scale >= -22 && scale <= 22) {
            double v = (double)mantissa;
            v = scale < 0 ? v / powers[-scale] : v * powers[scale];
            *out = negative ? -v : v;
            return 1;
        }
    }
    if (len >= (Py_ssize_t)sizeof buf)
        return 0;
    memcpy(buf, start, len);
    buf[len] = '\0';
    char *stop = NULL;
    double v = PyOS_string_to_double(buf, &stop, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (stop != buf + len || !isfinite(v))
        return 0;
    *out = v;
    return 1;
}

/* Past one JSON value of any kind; -1 when malformed (or nested too deep to bother). */
static int
skip_value(Scan *s, int depth)
{
    const char *start;
    Py_ssize_t len;
    int flag;
    ws(s);
    if (s->p >= s->end || depth > MAX_NESTING)
        return -1;
    char c = *s->p;
    if (c == '"')
        return str_span(s, &start, &len, &flag);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        s->p++;
        ws(s);
        if (s->p < s->end && *s->p == close) {
            s->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                ws(s);
                if (str_span(s, &start, &len, &flag) < 0)
                    return -1;
                ws(s);
                if (s->p >= s->end || *s->p != ':')
                    return -1;
                s->p++;
            }
            if (skip_value(s, depth + 1) < 0)
                return -1;
            ws(s);
            if (s->p >= s->end)
                return -1;
            if (*s->p == ',') {
                s->p++;
                continue;
            }
            if (*s->p == close) {
                s->p++;
                return 0;
            }
            return -1;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return num_span(s, &start, &len, &flag);
    static const char *literals[3] = {"null", "true", "false"};
    static const size_t lengths[3] = {4, 4, 5};
    for (int i = 0; i < 3; i++) {
        if ((size_t)(s->end - s->p) >= lengths[i] && memcmp(s->p, literals[i], lengths[i]) == 0) {
            s->p += lengths[i];
            return 0;
        }
    }
    return -1;
}

/* Whether a key's bytes are the literal `word`. */
#define is_key(start, len, word) ((len) == (Py_ssize_t)sizeof(word) - 1 && memcmp((start), (word), sizeof(word) - 1) == 0)

#define MAX_TYPES 16

typedef struct {
    const char *text[MAX_TYPES];
    Py_ssize_t len[MAX_TYPES];
    PyObject *obj[MAX_TYPES];
    int n;
} Types;

/* Ask the Python parser's cache for a series first seen in JSON here; NULL (no error) when it
   has not been seen valid. */
static Record *
learn_series(Table *t, PyObject *series_cache, uint64_t hash, const char *name_at, Py_ssize_t name_len,
             const char *tags_at, Py_ssize_t tags_len, const char **tag_at, Py_ssize_t *tag_len, int ntags)
{
    PyObject *flat = PyTuple_New(1 + 2 * ntags);
    if (flat == NULL)
        return NULL;
    PyObject *name = PyUnicode_DecodeUTF8(name_at, name_len, NULL);
    if (name == NULL)
        goto miss;
    /* One name object for all of a metric's series: a batch's ~50 names are then ~50 objects,
       which stay in the cache for the lookups of every point (known types, distinct()). */
    PyUnicode_InternInPlace(&name);
    PyTuple_SET_ITEM(flat, 0, name);
    for (int k = 0; k < 2 * ntags; k++) {
        PyObject *part = PyUnicode_DecodeUTF8(tag_at[k], tag_len[k], NULL);
        if (part == NULL)
            goto miss;
        PyTuple_SET_ITEM(flat, 1 + k, part);
    }
    PyObject *entry = PyDict_GetItemWithError(series_cache, flat);
    if (entry == NULL) {
        if (PyErr_Occurred())
            goto fail;
        goto miss;
    }
    Record *r = remember(t, hash, name_at, name_len, tags_at, tags_len, name, entry);
    Py_DECREF(flat);
    return r;
miss:
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
            goto fail;
        PyErr_Clear(); /* not UTF-8: orjson says so when the Python parser decodes the point */
    }
    Py_DECREF(flat);
    return NULL;
fail:
    Py_DECREF(flat);
    return NULL;
}

#define MAX_TAG_PARTS 64 /* 32 tags */

/* Whether the next token is `c` (consumed when it is). */
static inline int
take(Scan *s, char c)
{
    ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

static inline int
take_null(Scan *s)
{
    ws(s);
    if (s->end - s->p >= 4 && memcmp(s->p, "null", 4) == 0) {
        s->p += 4;
        return 1;
    }
    return 0;
}

/* After a member of an object or array: 1 when a comma says another follows, 0 at `close`
   (consumed), -1 at anything else. */
static inline int
next_member(Scan *s, char close)
{
    if (take(s, ','))
        return 1;
    return take(s, close) ? 0 : -1;
}

/* A string without escapes; -1 when the next token is not one. */
static inline int
plain_str(Scan *s, const char **at, Py_ssize_t *len)
{
    int escaped;
    ws(s);
    return str_span(s, at, len, &escaped) < 0 || escaped ? -1 : 0;
}

/* A number read exactly (num_value); -1 when it is not one, or not one read here. */
static inline int
number(Scan *s, double *out)
{
    const char *at;
    Py_ssize_t len;
    int is_float;
    ws(s);
    return num_span(s, &at, &len, &is_float) < 0 || !num_value(at, len, is_float, out) ? -1 : 0;
}

/* What the scan of one point object found. */
typedef struct {
    const char *name_at, *type_at, *tags_at, *tag_at[MAX_TAG_PARTS];
    Py_ssize_t name_len, type_len, tags_len, tag_len[MAX_TAG_PARTS];
    int ntags, has_value;
    double value, ts;
} Point;

/* A Point with nothing found yet. Only the scalars: the tag arrays (1 KB) are read up to
   `ntags` only, and clearing them for every point was ~4 % of HTTP ingest (perf). */
static inline void
point_init(Point *pt, double ts)
{
    pt->name_at = pt->type_at = NULL;
    pt->tags_at = "";
    pt->name_len = pt->type_len = pt->tags_len = 0;
    pt->ntags = pt->has_value = 0;
    pt->value = 1.0;
    pt->ts = ts;
}

/* A tags object of plain strings; -1 for anything else. */
static int
scan_tags(Scan *s, Point *pt)
{
    if (!take(s, '{'))
        return -1;
    if (take(s, '}'))
        return 0;
    for (;;) {
        int k = 2 * pt->ntags;
        if (k + 2 > MAX_TAG_PARTS || plain_str(s, &pt->tag_at[k], &pt->tag_len[k]) < 0 || !take(s, ':') ||
            plain_str(s, &pt->tag_at[k + 1], &pt->tag_len[k + 1]) < 0)
            return -1;
        pt->ntags++;
        int more = next_member(s, '}');
        if (more <= 0)
            return more;
    }
}

/* One point object of the ordinary shape: name and type, and value, timestamp and tags at most
   once each, nothing else. 0 with *pt filled; -1: the Python parser takes this point (a
   `window`, a key it ignores, a repeated key -- the last one counts, as orjson has it --, an
   escape, a number not read here, no name). */
static int
scan_point(Scan *s, Point *pt)
{
    int seen = 0;
    if (!take(s, '{') || take(s, '}'))
        return -1;
    for (;;) {
        const char *key;
        Py_ssize_t key_len;
        int bit, bad;
        if (plain_str(s, &key, &key_len) < 0 || !take(s, ':'))
            return -1;
        if (is_key(key, key_len, "name")) {
            bit = 1;
            bad = plain_str(s, &pt->name_at, &pt->name_len);
        } else if (is_key(key, key_len, "type")) {
            bit = 2;
            bad = plain_str(s, &pt->type_at, &pt->type_len);
        } else if (is_key(key, key_len, "value")) {
            bit = 4;
            pt->has_value = !take_null(s);
            bad = pt->has_value ? number(s, &pt->value) : 0;
        } else if (is_key(key, key_len, "timestamp")) {
            bit = 8;
            bad = take_null(s) ? 0 : number(s, &pt->ts);
        } else if (is_key(key, key_len, "tags")) {
            bit = 16;
            bad = 0;
            if (!take_null(s)) { /* null tags: as if none were sent (no text in the identity) */
                ws(s);
                const char *start = s->p;
                bad = scan_tags(s, pt);
                pt->tags_at = start;
                pt->tags_len = s->p - start;
            }
        } else {
            return -1;
        }
        if (bad || (seen & bit))
            return -1;
        seen |= bit;
        int more = next_member(s, '}');
        if (more < 0)
            return -1;
        if (more == 0)
            return (seen & 3) == 3 ? 0 : -1;
    }
}

/* A point the first pass found ordinary, waiting for its series to be looked up. */
typedef struct {
    Py_ssize_t i, name_len, tags_len;
    const char *point_at, *point_end, *name_at, *tags_at;
    PyObject *mtype;
    double value, ts;
    uint64_t hash;
} Pending;

typedef struct {
    Pending *items;
    Py_ssize_t n, cap;
} PendingList;

#define PREFETCH_AHEAD 8

static int
pending_grow(PendingList *list)
{
    Py_ssize_t cap = list->cap ? list->cap * 2 : 1024;
    Pending *items = PyMem_Realloc(list->items, cap * sizeof(Pending));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    list->items = items;
    list->cap = cap;
    return 0;
}

/* (position, start, end) of a point left to the Python parser. */
static int
add_slow(PyObject *slow, Py_ssize_t i, const char *start, const char *end, const void *base)
{
    PyObject *span = Py_BuildValue("(nnn)", i, (Py_ssize_t)(start - (const char *)base),
                                   (Py_ssize_t)(end - (const char *)base));
    if (span == NULL || PyList_Append(slow, span) < 0) {
        Py_XDECREF(span);
        return -1;
    }
    Py_DECREF(span);
    return 0;
}

/* ---- point dicts to batch columns --------------------------------------------------------- */

/* A point dict's fields, found in one walk over its entries, and its series as sent: the name
   and tag strings themselves (borrowed), in the dict's order; `ok` = 0 when they are not all
   strings. */
typedef struct {
    uint64_t hash;
    PyObject *name, *tags, *type, *value, *timestamp; /* borrowed from the point dict; NULL: absent */
    Py_ssize_t parts_at, nparts; /* its series as sent: name, k1, v1, ... in Keys.parts */
    int ok, has_window;
} Keyed;

enum { K_NAME, K_TAGS, K_TYPE, K_VALUE, K_TIMESTAMP, K_WINDOW, K_OTHER, K_NOT_STR };

/* Which of a point's keys `key` is. The keys of dicts built in Python source are the interned
   strings k_name etc., so the pointer tests decide almost always; others (a JSON decoder's
   keys) are compared by text. */
static inline int
which_key(PyObject *key)
{
    if (key == k_name) return K_NAME;
    if (key == k_type) return K_TYPE;
    if (key == k_value) return K_VALUE;
    if (key == k_tags) return K_TAGS;
    if (key == k_timestamp) return K_TIMESTAMP;
    if (key == k_window) return K_WINDOW;
    if (!PyUnicode_CheckExact(key)) {
        /* A lookup of "name" could find a str subclass, or an object whose type says it equals
           "name": those go to the Python parser. Built-in numbers and None never do. */
        if (PyLong_CheckExact(key) || PyFloat_CheckExact(key) || key == Py_None || PyBool_Check(key))
            return K_OTHER;
        return K_NOT_STR;
    }
    if (PyUnicode_KIND(key) != PyUnicode_1BYTE_KIND)
        return K_OTHER;
    static PyObject **const known[] = {&k_name, &k_tags, &k_type, &k_value, &k_timestamp, &k_window};
    Py_ssize_t len = PyUnicode_GET_LENGTH(key);
    for (int k = 0; k < K_OTHER; k++) {
        PyObject *want = *known[k];
        if (PyUnicode_GET_LENGTH(want) == len && memcmp(PyUnicode_DATA(want), PyUnicode_DATA(key), (size_t)len) == 0)
            return k;
    }
    return K_OTHER;
}

typedef struct {
    Keyed *items;
    PyObject **parts; /* borrowed */
    Py_ssize_t len, cap;
} Keys;

static int
keys_put(Keys *keys, PyObject *part)
{
    if (keys->len == keys->cap) {
        Py_ssize_t cap = keys->cap ? keys->cap * 2 : 4096;
        PyObject **grown = PyMem_Realloc(keys->parts, cap * sizeof(PyObject *));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        keys->parts = grown;
        keys->cap = cap;
    }
    keys->parts[keys->len++] = part;
    return 0;
}

/* ---- series of point dicts, by their strings ----------------------------------------------
 *
 * fast_parse's table (a capsule from dict_series_table()) keys a series by the strings a point
 * dict names it with: its name and tag keys and values, in the dict's order. A record holds
 * them (strong references), so a later point naming the series with the same objects (a
 * client's own constants: the common case in process) matches by identity, without encoding or
 * comparing any text; equal strings that are other objects match by text. The JSON parser's
 * table keys series by raw bytes instead (Record, above).
 */
typedef struct {
    PyObject *tags, *key; /* what series_cache said: canonical tags and the series key */
    Py_ssize_t n;
    PyObject *parts[]; /* name, k1, v1, ... */
} IdRecord;

static inline uint64_t
mix(uint64_t h, uint64_t x)
{
    h = (h ^ x) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 32);
}

static void
id_record_drop(void *rec)
{
    IdRecord *r = rec;
    Py_DECREF(r->tags);
    Py_DECREF(r->key);
    for (Py_ssize_t k = 0; k < r->n; k++)
        Py_DECREF(r->parts[k]);
    PyMem_Free(r);
}

static PyObject *
dict_series_table(PyObject *self, PyObject *unused)
{
    return table_new("rtanalytics.dict_series_table", id_record_drop);
}

/* Two exact strs: the same text? (Identity first: a client's own constants.) */
static inline int
same_str(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    Py_ssize_t len = PyUnicode_GET_LENGTH(a);
    return len == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)len * PyUnicode_KIND(a)) == 0;
}

static inline Slot *
id_table_find(Table *t, uint64_t hash, PyObject *const *parts, Py_ssize_t n)
{
    Py_ssize_t mask = t->cap - 1;
    for (Py_ssize_t i = (Py_ssize_t)(hash & mask);; i = (i + 1) & mask) {
        Slot *slot = &t->slots[i];
        IdRecord *r = slot->rec;
        if (r == NULL)
            return slot;
        if (slot->hash == hash && r->n == n) {
            Py_ssize_t k = 0;
            while (k < n && same_str(r->parts[k], parts[k]))
                k++;
            if (k == n)
                return slot;
        }
    }
}

/* Later, when the record has arrived: the objects a point's append will take references to
   (their reference counts are written; those misses were most of append_point's time). */
static inline void
id_prefetch_objects(const Table *t, uint64_t hash)
{
    const IdRecord *r = table_likely(t, hash);
    if (r != NULL) {
        __builtin_prefetch(r->tags, 1);
        __builtin_prefetch(r->key, 1);
    }
}

/* Remember what series_cache said of a series (`entry`: its (tags, key)); new references. */
static IdRecord *
id_remember(Table *t, uint64_t hash, PyObject *const *parts, Py_ssize_t n, PyObject *entry)
{
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "series cache entries are (tags, key) pairs");
        return NULL;
    }
    if (table_room(t) < 0)
        return NULL;
    Slot *slot = id_table_find(t, hash, parts, n);
    IdRecord *r = PyMem_Malloc(sizeof(IdRecord) + n * sizeof(PyObject *));
    if (r == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    r->tags = Py_NewRef(PyTuple_GET_ITEM(entry, 0));
    r->key = Py_NewRef(PyTuple_GET_ITEM(entry, 1));
    r->n = n;
    for (Py_ssize_t k = 0; k < n; k++)
        r->parts[k] = Py_NewRef(parts[k]);
    slot->hash = hash;
    slot->rec = r;
    t->used++;
    return r;
}

static PyObject *
series_table_size(PyObject *self, PyObject *capsule)
{
    const char *name = PyCapsule_IsValid(capsule, "rtanalytics.dict_series_table") ? "rtanalytics.dict_series_table"
                                                                                 : "rtanalytics.series_table";
    Table *t = PyCapsule_GetPointer(capsule, name);
    if (t == NULL)
        return NULL;
    return PyLong_FromSsize_t(t->used);
}

static int
key_point(Keys *keys, Py_ssize_t i, PyObject *p)
{
    Keyed *k = &keys->items[i];
    k->ok = 0;
    if (!PyDict_CheckExact(p))
        return 0;
    /* One walk over the dict's entries instead of a lookup per field: six lookups a point were
       ~14 % of in-process ingest (perf). */
    PyObject *found[K_OTHER] = {NULL};
    {
        Py_ssize_t pos = 0;
        PyObject *key, *val;
        while (PyDict_Next(p, &pos, &key, &val)) {
            int which = which_key(key);
            if (which == K_NOT_STR)
                return 0; /* the Python parser looks such a dict up as it is */
            if (which != K_OTHER)
                found[which] = val;
        }
    }
    PyObject *name = found[K_NAME], *tags = found[K_TAGS];
    if (name == NULL || !PyUnicode_CheckExact(name) || (tags != NULL && tags != Py_None && !PyDict_CheckExact(tags)))
        return 0;
    k->tags = tags;
    k->type = found[K_TYPE];
    k->value = found[K_VALUE];
    k->timestamp = found[K_TIMESTAMP];
    k->has_window = found[K_WINDOW] != NULL;
    k->parts_at = keys->len;
    Py_hash_t h = PyObject_Hash(name); /* an exact str: its cached hash, or made once */
    if (h == -1 || keys_put(keys, name) < 0)
        return -1;
    uint64_t hash = mix(0, (uint64_t)h);
    if (tags != NULL && tags != Py_None) {
        Py_ssize_t pos = 0;
        PyObject *key, *val;
        while (PyDict_Next(tags, &pos, &key, &val)) {
            if (!PyUnicode_CheckExact(key) || !PyUnicode_CheckExact(val)) {
                keys->len = k->parts_at; /* the Python parser says what is wrong */
                return 0;
            }
            Py_hash_t hk = PyObject_Hash(key), hv = PyObject_Hash(val);
            if (hk == -1 || hv == -1 || keys_put(keys, key) < 0 || keys_put(keys, val) < 0)
                return -1;
            hash = mix(mix(hash, (uint64_t)hk), (uint64_t)hv);
        }
    }
    k->nparts = keys->len - k->parts_at;
    k->name = name;
    k->hash = mix(hash, (uint64_t)k->nparts);
    k->ok = 1;
    return 0;
}

/* Ask the Python parser's cache for a series this table has not seen yet, by (name, k1, v1, ...)
   as the client sent them; NULL (no error) when it has not been seen valid. */
static IdRecord *
learn_dict_series(Table *t, PyObject *series_cache, const Keyed *k, PyObject *const *parts)
{
    if (PyErr_Occurred())
        return NULL;
    PyObject *flat = PyTuple_New(k->nparts);
    if (flat == NULL)
        return NULL;
    for (Py_ssize_t at = 0; at < k->nparts; at++)
        PyTuple_SET_ITEM(flat, at, Py_NewRef(parts[at]));
    PyObject *entry = PyDict_GetItemWithError(series_cache, flat);
    Py_DECREF(flat);
    if (entry == NULL)
        return NULL;
    return id_remember(t, k->hash, parts, k->nparts, entry);
}

#define MEMO 64

/* A dict lookup remembered for one call: key (borrowed; NULL: empty) -> value (borrowed, may be NULL). */
typedef struct {
    PyObject *key, *value;
} Memo;

/* dict[key] (NULL when absent) through the call's memo of that dict; -1 on error. The dict
   holds still for the call (no Python code runs in it), so a remembered answer stays true. */
static inline int
memo_get(Memo *memo, PyObject *dict, PyObject *key, PyObject **out)
{
    Memo *m = &memo[((uintptr_t)key >> 4) & (MEMO - 1)];
    if (m->key != key) {
        PyObject *found = PyDict_GetItemWithError(dict, key);
        if (found == NULL && PyErr_Occurred())
            return -1;
        m->key = key;
        m->value = found;
    }
    *out = m->value;
    return 0;
}

static PyObject *
fast_parse(PyObject *self, PyObject *args)
{
    Memo types_seen[MEMO] = {{NULL, NULL}}, known_seen[MEMO] = {{NULL, NULL}};
    PyObject *points, *capsule, *series_cache, *known, *types_by_value, *skip_type, *count_type;
    Columns out;
    double now, latest, oldest;
    if (!PyArg_ParseTuple(args, "O!dddOO!O!O!OOO!O!O!O!O!O!O!O!O!",
                          &PyList_Type, &points, &now, &latest, &oldest, &capsule,
                          &PyDict_Type, &series_cache, &PyDict_Type, &known,
                          &PyDict_Type, &types_by_value, &skip_type, &count_type,
                          &PyList_Type, &out.index, &PyList_Type, &out.names, &PyList_Type, &out.types,
                          &PyList_Type, &out.tags, &PyList_Type, &out.series, &PyList_Type, &out.timestamps,
                          &PyList_Type, &out.values, &PyByteArray_Type, &out.packed_ts, &PyByteArray_Type,
                          &out.packed_values))
        return NULL;
    Table *table = PyCapsule_GetPointer(capsule, "rtanalytics.dict_series_table");
    Py_ssize_t n = PyList_GET_SIZE(points);
    if (table == NULL)
        return NULL;
    if (columns_reserve(&out, n) < 0) {
        columns_done(&out);
        return NULL;
    }
    Keys keys = {PyMem_Calloc(n ? n : 1, sizeof(Keyed)), NULL, 0, 0};
    PyObject *slow = keys.items == NULL ? PyErr_NoMemory() : PyList_New(0);
    if (slow == NULL) {
        PyMem_Free(keys.items);
        columns_done(&out);
        return NULL;
    }
    /* Two passes, as parse_json does: the first works out each point's series key and
       prefetches its table slot, the second (prefetching records a few points ahead) takes the
       points. One lookup at a time in the Python parser's dict, its cache misses were the
       largest cost of this function. */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (key_point(&keys, i, PyList_GET_ITEM(points, i)) < 0)
            goto fail;
        if (keys.items[i].ok)
            __builtin_prefetch(&table->slots[keys.items[i].hash & (table->cap - 1)]);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n && keys.items[i + PREFETCH_AHEAD].ok)
            prefetch_record(table, keys.items[i + PREFETCH_AHEAD].hash);
        if (i + PREFETCH_AHEAD / 2 < n && keys.items[i + PREFETCH_AHEAD / 2].ok)
            id_prefetch_objects(table, keys.items[i + PREFETCH_AHEAD / 2].hash);
        PyObject *name, *raw_type, *mtype, *held, *value, *tags, *series, *raw_ts;
        double v, ts;
        const Keyed *k = &keys.items[i];
        if (!k->ok)
            goto take_slow; /* not a dict with a name and tags of strings: the Python parser says why */
        name = k->name;
        raw_type = k->type;
        if (raw_type == NULL || !PyUnicode_CheckExact(raw_type) || k->has_window)
            goto take_slow;
        /* A point's type and its name's registered type, remembered by string object in small
           direct-mapped caches instead of a dict lookup each per point. */
        if (memo_get(types_seen, types_by_value, raw_type, &mtype) < 0)
            goto fail;
        if (mtype == NULL || mtype == skip_type)
            goto take_slow;
        if (memo_get(known_seen, known, name, &held) < 0)
            goto fail;
        if (held != NULL && held != mtype)
            goto take_slow;
        value = k->value;
        if (value == NULL) {
            if (mtype != count_type) goto take_slow;
            v = 1.0;
        } else if (PyFloat_CheckExact(value)) {
            v = PyFloat_AS_DOUBLE(value);
        } else if (PyLong_CheckExact(value)) {
            v = PyLong_AsDouble(value);
            if (v == -1.0 && PyErr_Occurred()) { PyErr_Clear(); goto take_slow; }
        } else if (value == Py_None && mtype == count_type) {
            v = 1.0;
        } else {
            goto take_slow;
        }
        if (!isfinite(v))
            goto take_slow;
        {
            PyObject *const *parts = keys.parts + k->parts_at;
            IdRecord *e = id_table_find(table, k->hash, parts, k->nparts)->rec;
            if (e == NULL) {
                e = learn_dict_series(table, series_cache, k, parts);
                if (e == NULL) {
                    if (PyErr_Occurred()) goto fail;
                    goto take_slow;
                }
            }
            tags = e->tags;
            series = e->key;
        }
        raw_ts = k->timestamp;
        if (raw_ts == NULL || raw_ts == Py_None) {
            ts = now;
        } else if (PyFloat_CheckExact(raw_ts)) {
            ts = PyFloat_AS_DOUBLE(raw_ts);
        } else if (PyLong_CheckExact(raw_ts)) {
            ts = PyLong_AsDouble(raw_ts);
            if (ts == -1.0 && PyErr_Occurred()) { PyErr_Clear(); goto take_slow; }
        } else {
            goto take_slow;
        }
        if (!isfinite(ts) || ts > latest || ts < oldest)
            goto take_slow;
        if (append_point(&out, i, name, mtype, tags, series, ts, raw_ts, v, value) < 0)
            goto fail;
        continue;
    take_slow:
        {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (idx == NULL || PyList_Append(slow, idx) < 0) { Py_XDECREF(idx); goto fail; }
            Py_DECREF(idx);
        }
    }
    PyMem_Free(keys.items);
    PyMem_Free(keys.parts);
    if (columns_done(&out) < 0) {
        Py_DECREF(slow);
        return NULL;
    }
    return slow;
fail:
    PyMem_Free(keys.items);
    PyMem_Free(keys.parts);
    Py_DECREF(slow);
    columns_done(&out);
    return NULL;
}

static PyObject *
parse_json(PyObject *self, PyObject *args)
{
    Py_buffer body;
    double now, latest, oldest;
    PyObject *capsule, *series_cache, *known, *types_by_value, *skip_type, *count_type;
    Py_ssize_t max_points;
    Columns out;
    if (!PyArg_ParseTuple(args, "y*dddOO!O!O!OOnO!O!O!O!O!OOO!O!", &body, &now, &latest, &oldest, &capsule,
                          &PyDict_Type, &series_cache, &PyDict_Type, &known, &PyDict_Type, &types_by_value,
                          &skip_type, &count_type, &max_points, &PyList_Type, &out.index, &PyList_Type,
                          &out.names, &PyList_Type, &out.types, &PyList_Type, &out.tags, &PyList_Type,
                          &out.series, &out.timestamps, &out.values, &PyByteArray_Type, &out.packed_ts,
                          &PyByteArray_Type, &out.packed_values))
        return NULL;
    if (out.timestamps == Py_None && out.values == Py_None) {
        out.timestamps = out.values = NULL; /* floats in the packed columns only */
    } else if (!PyList_Check(out.timestamps) || !PyList_Check(out.values)) {
        PyBuffer_Release(&body);
        PyErr_SetString(PyExc_TypeError, "parse_json: timestamps and values are both lists, or both None");
        return NULL;
    }
    PyObject *slow = NULL, *result = NULL;
    PendingList pending = {NULL, 0, 0};
    int reserved = 0; /* columns_reserve was called and columns_done not yet */
    Table *table = PyCapsule_GetPointer(capsule, "rtanalytics.series_table");
    if (table == NULL)
        goto done;
    Types types;
    memset(&types, 0, sizeof types);
    {
        Py_ssize_t pos = 0;
        PyObject *k, *v;
        while (PyDict_Next(types_by_value, &pos, &k, &v) && types.n < MAX_TYPES) {
            Py_ssize_t n;
            const char *text = PyUnicode_Check(k) ? PyUnicode_AsUTF8AndSize(k, &n) : NULL;
            if (text == NULL)
                goto done;
            types.text[types.n] = text;
            types.len[types.n] = n;
            types.obj[types.n] = v;
            types.n++;
        }
    }
    slow = PyList_New(0);
    if (slow == NULL)
        goto done;
    Scan s = {body.buf, (const char *)body.buf + body.len};
    const char *at;
    Py_ssize_t len;
    Py_ssize_t count = 0;
    if (!take(&s, '{') || plain_str(&s, &at, &len) < 0 || !is_key(at, len, "metrics") || !take(&s, ':') ||
        !take(&s, '['))
        goto not_plain;
    /* Two passes, so that the series table's memory is fetched ahead of use: the first scans
       every point and prefetches its table slot; the second finds each record (prefetching the
       record a few points ahead) and appends. Between requests the store's writes evict the
       table from the caches: one lookup at a time, its two dependent misses were ~30 % of
       this function. */
    int more = take(&s, ']') ? 0 : 1;
    while (more == 1) {
        ws(&s);
        const char *point_at = s.p;
        Py_ssize_t i = count++;
        Point pt;
        point_init(&pt, now);
        int fast = count <= max_points && scan_point(&s, &pt) == 0;
        PyObject *mtype = NULL;
        if (fast) {
            for (int k = 0; k < types.n; k++)
                if (types.len[k] == pt.type_len && memcmp(types.text[k], pt.type_at, pt.type_len) == 0)
                    mtype = types.obj[k];
            if (mtype == NULL || mtype == skip_type || (!pt.has_value && mtype != count_type) ||
                !isfinite(pt.ts) || pt.ts > latest || pt.ts < oldest)
                fast = 0;
        }
        if (fast) {
            if (pending.n == pending.cap && pending_grow(&pending) < 0)
                goto done;
            Pending *q = &pending.items[pending.n++];
            q->i = i;
            q->point_at = point_at;
            q->point_end = s.p;
            q->mtype = mtype;
            q->value = pt.value;
            q->ts = pt.ts;
            q->name_at = pt.name_at;
            q->name_len = pt.name_len;
            q->tags_at = pt.tags_at;
            q->tags_len = pt.tags_len;
            q->hash = bytes_hash(bytes_hash(0, pt.name_at, pt.name_len), pt.tags_at, pt.tags_len);
            __builtin_prefetch(&table->slots[q->hash & (table->cap - 1)]);
        } else {
            s.p = point_at;
            if (skip_value(&s, 0) < 0)
                goto not_plain;
            if (count <= max_points && add_slow(slow, i, point_at, s.p, body.buf) < 0)
                goto done;
        }
        more = next_member(&s, ']');
    }
    reserved = 1;
    if (columns_reserve(&out, pending.n) < 0)
        goto done;
    for (Py_ssize_t j = 0; j < pending.n; j++) {
        if (j + PREFETCH_AHEAD < pending.n)
            prefetch_record(table, pending.items[j + PREFETCH_AHEAD].hash);
        Pending *q = &pending.items[j];
        Record *e = table_find(table, q->hash, q->name_at, q->name_len, q->tags_at, q->tags_len)->rec;
        int fast = 1;
        if (e == NULL) {
            /* not seen here yet: scan the point again for its tag strings, and ask the cache */
            Scan again = {q->point_at, q->point_end};
            Point pt;
            point_init(&pt, 0.0);
            scan_point(&again, &pt);
            e = learn_series(table, series_cache, q->hash, q->name_at, q->name_len, q->tags_at, q->tags_len,
                             pt.tag_at, pt.tag_len, pt.ntags);
            if (e == NULL && PyErr_Occurred())
                goto done;
            fast = e != NULL;
        }
        if (fast) {
            PyObject *held = PyDict_GetItemWithError(known, e->name);
            if (held == NULL && PyErr_Occurred())
                goto done;
            fast = held == NULL || held == q->mtype;
        }
        if (fast) {
            if (append_point(&out, q->i, e->name, q->mtype, e->tags, e->key, q->ts, NULL, q->value, NULL) < 0)
                goto done;
        } else if (add_slow(slow, q->i, q->point_at, q->point_end, body.buf) < 0) {
            goto done;
        }
    }
    if (more < 0)
        goto not_plain;
    if (!take(&s, '}'))
        goto not_plain;
    ws(&s);
    if (s.p != s.end)
        goto not_plain;
    reserved = 0;
    if (columns_done(&out) < 0)
        goto done;
    result = Py_BuildValue("(nO)", count, slow);
    goto done;
not_plain:
    result = Py_NewRef(Py_None);
done:
    if (reserved)
        columns_done(&out); /* on the way out with an error or None: what it says no longer matters */
    PyMem_Free(pending.items);
    Py_XDECREF(slow);
    PyBuffer_Release(&body);
    return result;
}

/* ---- quantile sketch bins ------------------------------------------------------------------
 *
 * merge_dense(sides) -> bytearray: the sum of a sketch side's dense stores, as
 * core/sketches.py's merge_dense_numpy makes it: each store is a bytearray of native int64s,
 * [low, n(low), n(low + 1), ...] (b"": empty); the result covers the union of their keys.
 * A live percentile over a one-minute window merges 60 one-second sketches each time it is read.
 */
static PyObject *
merge_dense(PyObject *self, PyObject *sides)
{
    PyObject *seq = PySequence_Fast(sides, "merge_dense takes a sequence of bytearrays");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    long long lo = LLONG_MAX, hi = LLONG_MIN;
    for (Py_ssize_t d = 0; d < n; d++) {
        PyObject *buf = PySequence_Fast_GET_ITEM(seq, d);
        if (!PyByteArray_Check(buf) || PyByteArray_GET_SIZE(buf) % 8 != 0 || PyByteArray_GET_SIZE(buf) == 8) {
            PyErr_SetString(PyExc_TypeError, "a dense store is a bytearray of int64s: low, then counts");
            Py_DECREF(seq);
            return NULL;
        }
        Py_ssize_t bins = PyByteArray_GET_SIZE(buf) / 8 - 1;
        if (bins <= 0)
            continue;
        int64_t low;
        memcpy(&low, PyByteArray_AS_STRING(buf), 8);
        if (low < lo)
            lo = low;
        if (low + bins - 1 > hi)
            hi = low + bins - 1;
    }
    if (lo > hi) {
        Py_DECREF(seq);
        return PyByteArray_FromStringAndSize(NULL, 0);
    }
    PyObject *out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(hi - lo + 2) * 8);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    int64_t *sums = (int64_t *)PyByteArray_AS_STRING(out);
    memset(sums, 0, (size_t)PyByteArray_GET_SIZE(out));
    sums[0] = lo;
    for (Py_ssize_t d = 0; d < n; d++) {
        PyObject *buf = PySequence_Fast_GET_ITEM(seq, d);
        Py_ssize_t bins = PyByteArray_GET_SIZE(buf) / 8 - 1;
        if (bins <= 0)
            continue;
        const int64_t *held = (const int64_t *)PyByteArray_AS_STRING(buf);
        int64_t *to = sums + 1 + (held[0] - lo);
        for (Py_ssize_t k = 0; k < bins; k++)
            to[k] += held[1 + k];
    }
    Py_DECREF(seq);
    return out;
}

/* ---- distinct(items) -> frozenset ------------------------------------------------------------
 *
 * frozenset(items) for a list that holds few distinct objects many times over (a batch's metric
 * names: ~50 name objects in 1,000 points). A small table of the objects already added, by
 * address, skips the hash and set probe of every repeat: frozenset() read each item's str to
 * get its hash (~26 us a batch, most of it cache misses); this reads only the list. An object
 * the table has no room for is added as frozenset() would add it; equal objects that are not
 * the same object are folded by the set itself.
 */
#define DISTINCT_SLOTS 256
#define DISTINCT_PROBES 8

static PyObject *
distinct(PyObject *self, PyObject *items)
{
    if (!PyList_Check(items)) {
        PyErr_SetString(PyExc_TypeError, "distinct() takes a list");
        return NULL;
    }
    PyObject *out = PyFrozenSet_New(NULL);
    if (out == NULL)
        return NULL;
    PyObject *seen[DISTINCT_SLOTS] = {NULL};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        size_t at = ((uintptr_t)item >> 4) * 0x9E3779B97F4A7C15ULL >> 56; /* 0..255 */
        int known = 0;
        /* Only exact str by address: hashing and comparing them runs no Python code, which
           could change the list and free an address the table holds. */
        for (int k = 0; PyUnicode_CheckExact(item) && k < DISTINCT_PROBES; k++) {
            PyObject **slot = &seen[(at + k) & (DISTINCT_SLOTS - 1)];
            if (*slot == item) {
                known = 1;
                break;
            }
            if (*slot == NULL) {
                *slot = item; /* the list holds a reference for the length of the call */
                break;
            }
        }
        if (!known && PySet_Add(out, item) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyMethodDef methods[] = {
    {"merge_dense", merge_dense, METH_O, "The sum of quantile sketch sides' dense stores (bytearrays of int64s)."},
    {"fast_parse", fast_parse, METH_VARARGS, "Validate ordinary point dicts into batch columns; return the rest's positions."},
    {"parse_json", parse_json, METH_VARARGS, "Validate the ordinary points of a JSON body into batch columns."},
    {"series_table", series_table, METH_NOARGS, "A new table of series seen valid, for parse_json."},
    {"dict_series_table", dict_series_table, METH_NOARGS, "A new table of series seen valid, for fast_parse."},
    {"series_table_size", series_table_size, METH_O, "How many series a table holds."},
    {"distinct", distinct, METH_O, "frozenset(items) of a list holding few distinct objects many times."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    k_name = PyUnicode_InternFromString("name");
    k_type = PyUnicode_InternFromString("type");
    k_value = PyUnicode_InternFromString("value");
    k_tags = PyUnicode_InternFromString("tags");
    k_timestamp = PyUnicode_InternFromString("timestamp");
    k_window = PyUnicode_InternFromString("window");
    empty_tuple = PyTuple_New(0);
    if (!k_name || !k_type || !k_value || !k_tags || !k_timestamp || !k_window || !empty_tuple)
        return NULL;
    return PyModule_Create(&module);
}
