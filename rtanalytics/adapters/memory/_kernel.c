/*
 * The memory store's write kernel: folds a batch of points of one state kind into the bucket
 * rings of every tier, the per-series totals and the quantile cells, in one pass. The numpy code
 * in rings.py does the same with a dozen array calls per tier; this loop is what makes a
 * 1,000-point batch cost microseconds rather than a millisecond.
 * tests/unit/test_memory_kernel.py requires both to leave identical arrays and cells.
 *
 * fold(rows, ts, values, tiers, last_write, totals, bins) -> None
 *   rows: int64[n], ts: float64[n], values: float64[n]   (contiguous buffers)
 *   tiers: sequence of (res, oldest, starts, data, offsets, cells, sketches)
 *     res, oldest: int; starts: int64[columns]; data: float64[capacity, columns, width], the
 *     fields of a bucket side by side; offsets: the positions of (count, sum, min, max, last,
 *     last_ts) in a bucket, -1 for a field the kind does not keep; cells: int64[n] (out: the
 *     row * columns + column of each point, -1 when the tier does not take it) or None;
 *     sketches: object[capacity, columns] (the cells of sketch kinds; a reset column is set to
 *     None here) or None.
 *   last_write: float64[capacity] or None (max of ts per row); totals: float64[capacity, 2] or
 *     None (count and sum per row, every point of the batch).
 *   bins: None, or (small_cell, sketch_type, log_gamma, min_indexable): add each value to its
 *     quantile cell in `sketches` like core/sketches.py's add_to_cells -- None -> [value]; a
 *     list -> append, and past small_cell values the list is replaced by the sketch
 *     quantile_cell_sketch(list) makes (made here); a sketch_type instance -> count += 1 and the
 *     value's bin += 1 (or its zero count). Bins are ceil(log(|v|) / log_gamma) with libm's log,
 *     as math.log; |v| <= min_indexable counts as zero. sketch_type must keep count, zero, pos
 *     and neg in __slots__; pos and neg are dense stores (bytearrays of native int64s: [low,
 *     n(low), n(low + 1), ...], b"" empty), grown here as core/sketches.py's _widen grows them.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static int
get_buf(PyObject *obj, Buf *buf, Py_ssize_t itemsize, const char *what)
{
    buf->held = 0;
    if (obj == Py_None)
        return 0;
    if (PyObject_GetBuffer(obj, &buf->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    buf->held = 1;
    if (buf->view.itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected %zd-byte items", what, itemsize);
        return -1;
    }
    return 0;
}

static void
release(Buf *bufs, int n)
{
    for (int i = 0; i < n; i++)
        if (bufs[i].held)
            PyBuffer_Release(&bufs[i].view);
}

#define NFIELDS 6 /* count, sum, min, max, last, last_ts */
#define PREFETCH_AHEAD 8


/* A QuantileSketch's slots (count, zero, pos, neg), read and written in place: the generic
   attribute protocol was most of the cost of adding a value to a sketch. */
typedef struct {
    Py_ssize_t count, zero, pos, neg;
} Slots;

static int
slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *out)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name);
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s has no slot %s", type->tp_name, name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)descr)->d_member->offset;
    return 0;
}

static inline PyObject **
slot(PyObject *obj, Py_ssize_t offset)
{
    return (PyObject **)((char *)obj + offset);
}

/* *at += by, for a slot that holds an int (NULL: unset, reads 0). */
static int
incr_slot(PyObject **at, long long by)
{
    long long n = 0;
    if (*at != NULL) {
        n = PyLong_AsLongLong(*at);
        if (n == -1 && PyErr_Occurred())
            return -1;
    }
    PyObject *o_n = PyLong_FromLongLong(n + by);
    if (o_n == NULL)
        return -1;
    Py_XSETREF(*at, o_n);
    return 0;
}

/* A sketch side's dense store (see the top of this file) made to hold bins lo..hi, new bins at
   zero; its counts from `*low` on. Grown by DENSE_PAD bins beyond a new key, as _widen does. */
#define DENSE_PAD 16

static int
dense_widen(PyObject *buf, int64_t lo, int64_t hi, int64_t **counts, int64_t *low)
{
    if (!PyByteArray_CheckExact(buf) || PyByteArray_GET_SIZE(buf) % 8 != 0 || PyByteArray_GET_SIZE(buf) == 8) {
        PyErr_SetString(PyExc_TypeError, "a sketch side must be a bytearray of int64s: low, then counts");
        return -1;
    }
    Py_ssize_t bins = PyByteArray_GET_SIZE(buf) / 8 - 1;
    int64_t *d = (int64_t *)PyByteArray_AS_STRING(buf);
    if (bins > 0 && lo >= d[0] && hi < d[0] + bins) {
        *counts = d + 1;
        *low = d[0];
        return 0;
    }
    int64_t new_low, new_high, shift = 0;
    if (bins <= 0) {
        new_low = lo - DENSE_PAD;
        new_high = hi + DENSE_PAD;
    } else {
        new_low = lo < d[0] ? lo - DENSE_PAD : d[0];
        new_high = hi > d[0] + bins - 1 ? hi + DENSE_PAD : d[0] + bins - 1;
        shift = d[0] - new_low;
    }
    Py_ssize_t new_bins = (Py_ssize_t)(new_high - new_low + 1);
    if (PyByteArray_Resize(buf, (new_bins + 1) * 8) < 0)
        return -1;
    d = (int64_t *)PyByteArray_AS_STRING(buf);
    if (bins > 0) {
        memmove(d + 1 + shift, d + 1, (size_t)bins * 8);
        memset(d + 1, 0, (size_t)shift * 8);
        memset(d + 1 + shift + bins, 0, (size_t)(new_bins - shift - bins) * 8);
    } else {
        memset(d + 1, 0, (size_t)new_bins * 8);
    }
    d[0] = new_low;
    *counts = d + 1;
    *low = new_low;
    return 0;
}

/* One more value in a quantile sketch: count += 1, and its bin (or the zero count) += 1. */
static int
sketch_add(PyObject *sketch, const Slots *at, int64_t key, int64_t sign)
{
    if (incr_slot(slot(sketch, at->count), 1) < 0)
        return -1;
    if (sign == 0)
        return incr_slot(slot(sketch, at->zero), 1);
    PyObject *side = *slot(sketch, sign > 0 ? at->pos : at->neg);
    int64_t *counts, low;
    if (side == NULL) {
        PyErr_SetString(PyExc_AttributeError, "sketch bins are unset");
        return -1;
    }
    if (dense_widen(side, key, key, &counts, &low) < 0)
        return -1;
    counts[key - low] += 1;
    return 0;
}

typedef struct {
    const int64_t *keys, *signs;
    Py_ssize_t small_cell;
    PyObject *sketch_type;
    double log_gamma, min_indexable;
    Slots at;
} Bins;

/* The sketch of a small cell's values, as core/sketches.py's quantile_cell_sketch makes it:
   each value's bin is ceil(log(|v|) / log_gamma) (libm's log, as math.log), |v| <= min_indexable
   counts as zero. */
static PyObject *
promote(PyObject *list, const Bins *bins)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    int64_t *keys[2] = {NULL, NULL};
    PyObject *sketch = PyObject_CallNoArgs(bins->sketch_type);
    if (sketch == NULL)
        return NULL;
    if (Py_TYPE(sketch) != (PyTypeObject *)bins->sketch_type) {
        PyErr_SetString(PyExc_TypeError, "the sketch type made another type");
        goto fail;
    }
    keys[0] = PyMem_Malloc((size_t)(n + 1) * 8);
    keys[1] = PyMem_Malloc((size_t)(n + 1) * 8);
    if (keys[0] == NULL || keys[1] == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_ssize_t held[2] = {0, 0};
    int64_t lo[2] = {INT64_MAX, INT64_MAX}, hi[2] = {INT64_MIN, INT64_MIN};
    long long zero = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        double v = PyFloat_AsDouble(PyList_GET_ITEM(list, k));
        if (v == -1.0 && PyErr_Occurred())
            goto fail;
        double absolute = fabs(v);
        if (!(absolute > bins->min_indexable)) {
            zero++;
            continue;
        }
        int s = v > 0 ? 0 : 1;
        int64_t key = (int64_t)ceil(log(absolute) / bins->log_gamma);
        keys[s][held[s]++] = key;
        if (key < lo[s])
            lo[s] = key;
        if (key > hi[s])
            hi[s] = key;
    }
    for (int s = 0; s < 2; s++) {
        if (!held[s])
            continue;
        PyObject *side = *slot(sketch, s == 0 ? bins->at.pos : bins->at.neg);
        int64_t *counts, low;
        if (side == NULL || dense_widen(side, lo[s], hi[s], &counts, &low) < 0)
            goto fail;
        for (Py_ssize_t k = 0; k < held[s]; k++)
            counts[keys[s][k] - low] += 1;
    }
    if (incr_slot(slot(sketch, bins->at.count), n) < 0 || incr_slot(slot(sketch, bins->at.zero), zero) < 0)
        goto fail;
    PyMem_Free(keys[0]);
    PyMem_Free(keys[1]);
    /* As for the lists above: a sketch holds ints and bytearrays (its __slots__), so it cannot
       be part of a reference cycle, and a full collection need not walk every sketch cell of
       every ring (two per series a minute and an hour: millions for a large tenant). */
    PyObject_GC_UnTrack(sketch);
    return sketch;
fail:
    PyMem_Free(keys[0]);
    PyMem_Free(keys[1]);
    Py_DECREF(sketch);
    return NULL;
}

/* Add values[i] to the quantile cell *slot (a reference the object array owns). */
static int
cell_add(PyObject **slot, double value, Py_ssize_t i, const Bins *bins)
{
    PyObject *cell = *slot;
    if (cell == Py_None || cell == NULL) {
        PyObject *list = PyList_New(1);
        PyObject *v = PyFloat_FromDouble(value);
        if (list == NULL || v == NULL) {
            Py_XDECREF(list);
            Py_XDECREF(v);
            return -1;
        }
        PyList_SET_ITEM(list, 0, v);
        /* A list of floats cannot be part of a reference cycle: keep it out of the cyclic GC,
           which otherwise walks every cell of every ring at each full collection (millions of
           lists; bench/ingest_engine.py spent ~20 % of its time there). */
        PyObject_GC_UnTrack(list);
        *slot = list;
        Py_XDECREF(cell);
        return 0;
    }
    if (PyList_CheckExact(cell)) {
        PyObject *v = PyFloat_FromDouble(value);
        if (v == NULL)
            return -1;
        int bad = PyList_Append(cell, v);
        Py_DECREF(v);
        if (bad)
            return -1;
        if (PyList_GET_SIZE(cell) > bins->small_cell) {
            PyObject *sketch = promote(cell, bins);
            if (sketch == NULL)
                return -1;
            *slot = sketch;
            Py_DECREF(cell);
        }
        return 0;
    }
    if (Py_TYPE(cell) != (PyTypeObject *)bins->sketch_type) {
        PyErr_Format(PyExc_TypeError, "a quantile cell holds a %s", Py_TYPE(cell)->tp_name);
        return -1;
    }
    return sketch_add(cell, &bins->at, bins->keys[i], bins->signs[i]);
}

/* The ring column of the bucket holding time t (a prefetch's guess: the bucket's reset and
   retention are checked when the point itself is folded). */
static inline int64_t
column_of(double t, long long res, Py_ssize_t columns)
{
    return ((int64_t)floor(t / (double)res) % columns + columns) % columns;
}

static const double empty_state[NFIELDS] = {0.0, 0.0, INFINITY, -INFINITY, -INFINITY, -INFINITY};

/* One point into one bucket's numeric state. */
static inline void
cell_fold(double *state, const int *off, double v, double t)
{
    state[off[0]] += 1.0;
    if (off[1] >= 0)
        state[off[1]] += v;
    if (off[2] >= 0 && v < state[off[2]])
        state[off[2]] = v;
    if (off[3] >= 0 && v > state[off[3]])
        state[off[3]] = v;
    if (off[4] >= 0 && off[5] >= 0) {
        double held_ts = state[off[5]];
        if (t > held_ts || (t == held_ts && v > state[off[4]])) {
            state[off[4]] = v;
            state[off[5]] = t;
        }
    }
}

/* Column `col` of every row back to the empty state (the numeric fields). */
static void
column_clear(double *data, Py_ssize_t capacity, Py_ssize_t columns, Py_ssize_t width, Py_ssize_t col,
             const int *off)
{
    for (Py_ssize_t r = 0; r < capacity; r++)
        for (int f = 0; f < NFIELDS; f++)
            if (off[f] >= 0)
                data[(r * columns + col) * width + off[f]] = empty_state[f];
}

/* The column a point at time t goes to in a tier, or -1 when the tier does not take it (older
   than the tier keeps, or its column holds a newer bucket: the clock went back by more than a
   ring). A column that held an older bucket is claimed for this one: *fresh says the caller
   must clear it. */
static inline Py_ssize_t
take_column(double t, long long res, long long oldest, int64_t *starts, Py_ssize_t columns, int *fresh)
{
    int64_t bucket = (int64_t)floor(t / (double)res) * res;
    *fresh = 0;
    if (bucket < oldest)
        return -1;
    int64_t col = (bucket / res) % columns;
    if (col < 0)
        col += columns;
    if (starts[col] != bucket) {
        if (starts[col] > bucket)
            return -1;
        starts[col] = bucket;
        *fresh = 1;
    }
    return (Py_ssize_t)col;
}

/* Each point's row: the latest write and the running count and sum. */
static void
fold_totals(const int64_t *rows, const double *ts, const double *values, Py_ssize_t n, double *last_write,
            double *totals, Py_ssize_t rows_held)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t r = rows[i];
        if (r < 0 || r >= rows_held)
            continue;
        if (last_write && ts[i] > last_write[r])
            last_write[r] = ts[i];
        if (totals) {
            totals[2 * r] += 1.0;
            totals[2 * r + 1] += values[i];
        }
    }
}

static PyObject *
fold(PyObject *self, PyObject *args)
{
    PyObject *o_rows, *o_ts, *o_values, *tiers, *o_last = Py_None, *o_totals = Py_None, *o_bins = Py_None;
    if (!PyArg_ParseTuple(args, "OOOO|OOO", &o_rows, &o_ts, &o_values, &tiers, &o_last, &o_totals, &o_bins))
        return NULL;
    /* in: rows, ts, values, last_write, totals */
    Buf in[5];
    memset(in, 0, sizeof in);
    PyObject *result = NULL, *seq = NULL;
    Bins bins = {0};
    int64_t *key_buf = NULL;
    if (get_buf(o_rows, &in[0], 8, "rows") < 0 || get_buf(o_ts, &in[1], 8, "ts") < 0 ||
        get_buf(o_values, &in[2], 8, "values") < 0 || get_buf(o_last, &in[3], 8, "last_write") < 0 ||
        get_buf(o_totals, &in[4], 8, "totals") < 0)
        goto done;
    Py_ssize_t n = in[0].view.len / 8;
    if (in[1].view.len / 8 != n || in[2].view.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "rows, ts and values differ in length");
        goto done;
    }
    if (o_bins != Py_None) {
        if (!PyArg_ParseTuple(o_bins, "nO!dd", &bins.small_cell, &PyType_Type, &bins.sketch_type, &bins.log_gamma,
                              &bins.min_indexable))
            goto done;
        PyTypeObject *type = (PyTypeObject *)bins.sketch_type;
        if (slot_offset(type, "count", &bins.at.count) < 0 || slot_offset(type, "zero", &bins.at.zero) < 0 ||
            slot_offset(type, "pos", &bins.at.pos) < 0 || slot_offset(type, "neg", &bins.at.neg) < 0)
            goto done;
        /* Each value's bin, with libm's log as math.log (core/sketches.py's add_to_cells and
           quantile_cell_sketch count the same bins). */
        key_buf = PyMem_Malloc((size_t)(2 * (n > 0 ? n : 1)) * sizeof(int64_t));
        if (key_buf == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        const double *vals = in[2].view.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            double absolute = fabs(vals[i]);
            int indexable = absolute > bins.min_indexable;
            key_buf[i] = indexable ? (int64_t)ceil(log(absolute) / bins.log_gamma) : 0;
            key_buf[n + i] = indexable ? (vals[i] > 0 ? 1 : -1) : 0;
        }
        bins.keys = key_buf;
        bins.signs = key_buf + n;
    }
    const int64_t *rows = in[0].view.buf;
    const double *ts = in[1].view.buf, *values = in[2].view.buf;
    double *last_write = in[3].held ? in[3].view.buf : NULL;
    double *totals = in[4].held ? in[4].view.buf : NULL;
    Py_ssize_t rows_held = PY_SSIZE_T_MAX;
    if (last_write)
        rows_held = in[3].view.len / 8;
    if (totals && in[4].view.len / 16 < rows_held)
        rows_held = in[4].view.len / 16;
    seq = PySequence_Fast(tiers, "tiers must be a sequence");
    if (seq == NULL)
        goto done;
    if (last_write || totals)
        fold_totals(rows, ts, values, n, last_write, totals, rows_held);
    Py_ssize_t ntiers = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t t = 0; t < ntiers; t++) {
        PyObject *tier = PySequence_Fast_GET_ITEM(seq, t);
        long long res, oldest;
        int off[NFIELDS];
        PyObject *o_starts, *o_data, *o_cells, *o_sketches = Py_None;
        if (!PyArg_ParseTuple(tier, "LLOO(iiiiii)O|O", &res, &oldest, &o_starts, &o_data, &off[0], &off[1],
                              &off[2], &off[3], &off[4], &off[5], &o_cells, &o_sketches))
            goto done;
        Buf b[4];
        memset(b, 0, sizeof b);
        if (get_buf(o_starts, &b[0], 8, "starts") < 0 || get_buf(o_cells, &b[1], 8, "cells") < 0 ||
            get_buf(o_data, &b[2], 8, "data") < 0 || get_buf(o_sketches, &b[3], sizeof(PyObject *), "sketches") < 0) {
            release(b, 4);
            goto done;
        }
        if (!b[0].held || !b[2].held || res <= 0 || off[0] < 0 || b[2].view.ndim != 3) {
            PyErr_SetString(PyExc_ValueError, "a tier needs res > 0, starts, 3-d data and a count");
            release(b, 4);
            goto done;
        }
        int64_t *starts = b[0].view.buf;
        int64_t *cells = b[1].held ? b[1].view.buf : NULL;
        double *data = b[2].view.buf;
        Py_ssize_t capacity = b[2].view.shape[0], columns = b[2].view.shape[1], width = b[2].view.shape[2];
        PyObject **sketches = NULL;
        if (b[3].held) {
            if (b[3].view.ndim != 2 || b[3].view.shape[0] != capacity || b[3].view.shape[1] != columns ||
                strcmp(b[3].view.format, "O") != 0) {
                PyErr_SetString(PyExc_ValueError, "sketches must be an object array shaped like data's cells");
                release(b, 4);
                goto done;
            }
            sketches = b[3].view.buf;
        }
        if (b[0].view.len / 8 != columns) {
            PyErr_SetString(PyExc_ValueError, "starts and data disagree on the number of columns");
            release(b, 4);
            goto done;
        }
        /* The rings are far larger than the CPU caches and points land at random rows: each
           point's bucket (and cell) is asked for PREFETCH_AHEAD points early, so the misses
           overlap; its guessed place (row * columns + column, -1: none) is worked out once. */
        Py_ssize_t *guess = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof(Py_ssize_t));
        if (guess == NULL) {
            PyErr_NoMemory();
            release(b, 4);
            goto done;
        }
        for (Py_ssize_t j = 0; j < n; j++)
            guess[j] = rows[j] >= 0 && rows[j] < capacity ? rows[j] * columns + column_of(ts[j], res, columns) : -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t j = i + PREFETCH_AHEAD;
            if (j < n && guess[j] >= 0) {
                __builtin_prefetch(data + guess[j] * width, 1);
                if (sketches)
                    __builtin_prefetch(sketches + guess[j], 0);
            }
            /* A cell is a chain of objects, each found in the one before: ask for the next link
               of a point's chain at each step nearer (cell, then a list's next item slot or the
               sketch side's bytearray and count, then that side's low key, then its bin). */
            j = i + 6;
            if (sketches && j < n && guess[j] >= 0) {
                PyObject *o = sketches[guess[j]];
                if (o != NULL && o != Py_None)
                    __builtin_prefetch(o, 1);
            }
            static const int steps[] = {4, 2, 1};
            for (int s = 0; sketches && bins.keys && s < 3; s++) {
                int step = steps[s];
                j = i + step;
                if (j >= n || guess[j] < 0)
                    continue;
                PyObject *o = sketches[guess[j]];
                if (o == NULL || o == Py_None)
                    continue;
                if (PyList_CheckExact(o)) {
                    if (step == 4)
                        __builtin_prefetch(((PyListObject *)o)->ob_item + PyList_GET_SIZE(o), 1);
                    continue;
                }
                if (Py_TYPE(o) != (PyTypeObject *)bins.sketch_type || bins.signs[j] == 0)
                    continue;
                PyObject *side = *slot(o, bins.signs[j] > 0 ? bins.at.pos : bins.at.neg);
                if (step == 4) {
                    __builtin_prefetch(side, 0);
                    __builtin_prefetch(*slot(o, bins.at.count), 1);
                    continue;
                }
                if (side == NULL || !PyByteArray_CheckExact(side) || PyByteArray_GET_SIZE(side) < 16)
                    continue;
                const int64_t *d = (const int64_t *)PyByteArray_AS_STRING(side);
                if (step == 2) {
                    __builtin_prefetch(d, 0);
                } else {
                    int64_t k = bins.keys[j] - d[0];
                    if (k >= 0 && k < PyByteArray_GET_SIZE(side) / 8 - 1)
                        __builtin_prefetch(d + 1 + k, 1);
                }
            }
            if (cells)
                cells[i] = -1;
            if (rows[i] < 0 || rows[i] >= capacity)
                continue;
            int fresh;
            Py_ssize_t col = take_column(ts[i], res, oldest, starts, columns, &fresh);
            if (col < 0)
                continue;
            if (fresh) {
                column_clear(data, capacity, columns, width, col, off);
                for (Py_ssize_t r = 0; sketches && r < capacity; r++) {
                    PyObject *old = sketches[r * columns + col];
                    if (old != Py_None) {
                        Py_INCREF(Py_None);
                        sketches[r * columns + col] = Py_None;
                        Py_XDECREF(old);
                    }
                }
            }
            Py_ssize_t cell = rows[i] * columns + col;
            double v = values[i];
            cell_fold(data + cell * width, off, v, ts[i]);
            if (cells)
                cells[i] = cell;
            if (sketches && bins.keys && cell_add(&sketches[cell], v, i, &bins) < 0) {
                PyMem_Free(guess);
                release(b, 4);
                goto done;
            }
        }
        PyMem_Free(guess);
        release(b, 4);
    }
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(key_buf);
    Py_XDECREF(seq);
    release(in, 5);
    return result;
}

/* ---- fold_start / fold_wait: the numeric fold on a second thread ------------------------------
 *
 * fold_start(parts) -> None, parts: [(rows, ts, values, tiers, last_write, totals), ...]
 *   fold() of each part, for tables without quantile cells (every tier's cells and sketches
 *   None), done by a worker thread that holds no GIL: the caller goes on (the response, the next
 *   request's parse) while the rings are written. This machine's second core sat ~80 % idle
 *   under HTTP ingest, and the fold, bound on memory, was ~20 % of the service's core. Folds
 *   wait in a queue of QUEUE and are done one at a time, in the order started: fold_start waits
 *   only when the queue is full. A fold's arrays are held (buffer views) until it is done and a
 *   later fold_start or fold_wait releases them. The queue is there for the worker's stalls: on
 *   this VM its fold of a batch now and then took 4-100 ms in place of ~0.3 (the host did not
 *   run its vCPU), and the next batch's write, which waited for it, waited that long.
 * fold_wait() -> None
 *   Returns once every fold started is done, and releases their arrays. The store calls it
 *   before any use of its tables other than a write that only adds points to rows it holds, so
 *   a read never sees a fold half done; a write that needs new rows waits too.
 * With two CPUs or more to run on, the worker spins for the next fold a little while after
 * each (WORKER_SPIN_US), and fold_wait for the fold to end (WAITER_SPIN_US), before either
 * sleeps on its condition variable; see spin_for. Correctness rests on the condition
 * variables alone: a spin only saves a wake-up. fold_allow_spin(False) turns spinning off
 * (for good, or until fold_allow_spin(True)); fold_spins() -> bool says whether it is on.
 * fold_pending() -> int
 *   How many folds started are not done yet (tests).
 * fold_test_delay(microseconds) -> None
 *   Tests only: the worker sleeps that long before each fold, so that a read that did not wait
 *   reads the rings before the fold.
 */

#define MAX_TIERS 8
#define MAX_PARTS 8

typedef struct {
    long long res, oldest;
    int off[NFIELDS];
    int64_t *starts;
    double *data;
    Py_ssize_t capacity, columns, width;
} TierSpec;

typedef struct {
    const int64_t *rows;
    const double *ts, *values;
    Py_ssize_t n, rows_held;
    double *last_write, *totals;
    TierSpec tiers[MAX_TIERS];
    int ntiers;
} PartSpec;

typedef struct {
    PartSpec parts[MAX_PARTS];
    int nparts;
    Buf bufs[MAX_PARTS * (5 + 2 * MAX_TIERS)];
    int nbufs;
} Job;

#ifndef QUEUE
#define QUEUE 64 /* folds started and not yet done: ~60 ms of 1,000-point batches */
#endif

/* Jobs posted, finished by the worker, and released (their arrays let go, with the GIL) are
   counted up for good; job k lives in jobs[k % QUEUE]. released <= finished <= posted, and
   posted - released <= QUEUE. posted and finished change under the lock and are read with
   atomic loads where the lock is not held (a spin). */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    long posted, finished, released;
    int started;
    long delay_us;
    int spin;         /* spin before sleeping: spin_allowed and can_spin(), when the worker starts */
    int spin_allowed; /* fold_allow_spin() */
    Job jobs[QUEUE];
} job = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0,
         .spin_allowed = 1};

/* fold()'s loop for one tier without quantile cells; no Python here. */
static void
fold_tier_numeric(const TierSpec *t, const int64_t *rows, const double *ts, const double *values, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n) {
            Py_ssize_t j = i + PREFETCH_AHEAD;
            int64_t ahead = column_of(ts[j], t->res, t->columns);
            if (rows[j] >= 0 && rows[j] < t->capacity)
                __builtin_prefetch(t->data + (rows[j] * t->columns + ahead) * t->width, 1);
        }
        if (rows[i] < 0 || rows[i] >= t->capacity)
            continue;
        int fresh;
        Py_ssize_t col = take_column(ts[i], t->res, t->oldest, t->starts, t->columns, &fresh);
        if (col < 0)
            continue;
        if (fresh)
            column_clear(t->data, t->capacity, t->columns, t->width, col, t->off);
        cell_fold(t->data + (rows[i] * t->columns + col) * t->width, t->off, values[i], ts[i]);
    }
}

/* Spinning instead of sleeping, for a short while: waking a thread asleep on a condition
   variable took 40-220 us on this VM (a 1-point fold's start-to-done round trip, median), where
   a 1,000-point batch's fold takes a few hundred. Only with two CPUs or more to run on: with
   one, a spinning thread takes the time the other needs. */
#ifndef WORKER_SPIN_US
#define WORKER_SPIN_US 300   /* the worker, after a fold, for the next one */
#endif
#ifndef WAITER_SPIN_US
#define WAITER_SPIN_US 2000  /* fold_wait, for the fold to finish */
#endif

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline double
now_us(void)
{
    struct timespec at;
    clock_gettime(CLOCK_MONOTONIC, &at);
    return at.tv_sec * 1e6 + at.tv_nsec / 1e3;
}

/* Spin until job.finished reaches `finished` (want_done) or job.posted passes `posted` (a new
   job for the worker), or `us` microseconds pass; whether it got there. */
static int
spin_for(long until_finished, int want_done, double us)
{
    double until = now_us() + us;
    for (int k = 0;; k++) {
        if (want_done ? __atomic_load_n(&job.finished, __ATOMIC_ACQUIRE) >= until_finished
                      : __atomic_load_n(&job.posted, __ATOMIC_ACQUIRE) > until_finished)
            return 1;
        cpu_relax();
        if ((k & 63) == 63 && now_us() > until)
            return 0;
    }
}

static int
can_spin(void)
{
    cpu_set_t cpus;
    return sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) > 1;
}

static void
run_job(const Job *j)
{
    for (int p = 0; p < j->nparts; p++) {
        const PartSpec *part = &j->parts[p];
        if (part->last_write || part->totals)
            fold_totals(part->rows, part->ts, part->values, part->n, part->last_write, part->totals,
                        part->rows_held);
        for (int t = 0; t < part->ntiers; t++)
            fold_tier_numeric(&part->tiers[t], part->rows, part->ts, part->values, part->n);
    }
}

static void *
fold_worker(void *unused)
{
    for (;;) {
        long next = __atomic_load_n(&job.finished, __ATOMIC_RELAXED); /* only this thread changes it */
        if (__atomic_load_n(&job.spin, __ATOMIC_RELAXED))
            spin_for(next, 0, WORKER_SPIN_US);
        pthread_mutex_lock(&job.lock);
        while (job.posted == next)
            pthread_cond_wait(&job.wake, &job.lock);
        pthread_mutex_unlock(&job.lock);
        if (job.delay_us > 0) {
            struct timespec pause = {job.delay_us / 1000000, (job.delay_us % 1000000) * 1000};
            nanosleep(&pause, NULL);
        }
        run_job(&job.jobs[next % QUEUE]);
        pthread_mutex_lock(&job.lock);
        __atomic_store_n(&job.finished, next + 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&job.done);
        pthread_mutex_unlock(&job.lock);
    }
    return NULL;
}

/* A forked child has no worker: it starts its own, and forgets a fold it cannot finish. */
static void
fold_after_fork(void)
{
    pthread_mutex_init(&job.lock, NULL);
    pthread_cond_init(&job.wake, NULL);
    pthread_cond_init(&job.done, NULL);
    job.started = 0;
    job.posted = job.finished = job.released = 0;
    for (int k = 0; k < QUEUE; k++)
        job.jobs[k].nbufs = 0;
}

/* Release the arrays of the jobs the worker has finished (with the GIL). */
static void
release_finished(void)
{
    long finished = __atomic_load_n(&job.finished, __ATOMIC_ACQUIRE);
    for (; job.released < finished; job.released++) {
        Job *j = &job.jobs[job.released % QUEUE];
        release(j->bufs, j->nbufs);
        j->nbufs = 0;
    }
}

/* Wait (without the GIL) until the worker has finished job `upto` - 1 and every one before,
   then release their arrays (with it). */
static void
wait_until(long upto)
{
    if (__atomic_load_n(&job.finished, __ATOMIC_ACQUIRE) < upto) {
        /* the lock is let go before the GIL is taken back: never one held awaiting the other */
        Py_BEGIN_ALLOW_THREADS
        if (__atomic_load_n(&job.spin, __ATOMIC_RELAXED))
            spin_for(upto, 1, WAITER_SPIN_US);
        pthread_mutex_lock(&job.lock);
        while (job.finished < upto)
            pthread_cond_wait(&job.done, &job.lock);
        pthread_mutex_unlock(&job.lock);
        Py_END_ALLOW_THREADS
    }
    release_finished();
}

/* Wait for every fold started, and release their arrays. */
static void
wait_job(void)
{
    wait_until(__atomic_load_n(&job.posted, __ATOMIC_ACQUIRE));
}

static PyObject *
fold_wait(PyObject *self, PyObject *unused)
{
    wait_job();
    Py_RETURN_NONE;
}

static PyObject *
fold_pending(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(__atomic_load_n(&job.posted, __ATOMIC_ACQUIRE) -
                           __atomic_load_n(&job.finished, __ATOMIC_ACQUIRE));
}

static PyObject *
fold_spins(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(job.started && job.spin);
}

static PyObject *
fold_allow_spin(PyObject *self, PyObject *arg)
{
    int allowed = PyObject_IsTrue(arg);
    if (allowed < 0)
        return NULL;
    job.spin_allowed = allowed;
    if (job.started) /* a worker spinning now finishes that spin (at most WORKER_SPIN_US) */
        __atomic_store_n(&job.spin, allowed && can_spin(), __ATOMIC_RELAXED);
    Py_RETURN_NONE;
}

static PyObject *
fold_test_delay(PyObject *self, PyObject *arg)
{
    long us = PyLong_AsLong(arg);
    if (us == -1 && PyErr_Occurred())
        return NULL;
    wait_job();
    job.delay_us = us;
    Py_RETURN_NONE;
}

/* The next buffer slot of a job, filled from obj (None: left unheld). */
static int
job_buf(Job *j, PyObject *obj, Py_ssize_t itemsize, const char *what, Buf **out)
{
    Buf *b = &j->bufs[j->nbufs];
    if (get_buf(obj, b, itemsize, what) < 0) {
        if (b->held)
            PyBuffer_Release(&b->view);
        b->held = 0;
        return -1;
    }
    j->nbufs++;
    *out = b;
    return 0;
}

static PyObject *
fold_start(PyObject *self, PyObject *o_parts)
{
    /* Room in the queue: the oldest job done if it is full (the worker then has ~QUEUE folds
       to do); the arrays of every job done are let go. */
    wait_until(job.posted - QUEUE + 1);
    Job *j = &job.jobs[job.posted % QUEUE]; /* posted changes only here, with the GIL */
    j->nparts = 0;
    j->nbufs = 0;
    PyObject *parts = PySequence_Fast(o_parts, "parts must be a sequence");
    if (parts == NULL)
        return NULL;
    Py_ssize_t nparts = PySequence_Fast_GET_SIZE(parts);
    if (nparts > MAX_PARTS) {
        PyErr_SetString(PyExc_ValueError, "fold_start: too many parts");
        goto fail;
    }
    for (Py_ssize_t p = 0; p < nparts; p++) {
        PyObject *o_rows, *o_ts, *o_values, *tiers, *o_last, *o_totals;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(parts, p), "OOOOOO", &o_rows, &o_ts, &o_values, &tiers,
                              &o_last, &o_totals))
            goto fail;
        PartSpec *part = &j->parts[j->nparts++];
        Buf *rows, *ts, *values, *last, *totals;
        if (job_buf(j, o_rows, 8, "rows", &rows) < 0 || job_buf(j, o_ts, 8, "ts", &ts) < 0 ||
            job_buf(j, o_values, 8, "values", &values) < 0 || job_buf(j, o_last, 8, "last_write", &last) < 0 ||
            job_buf(j, o_totals, 8, "totals", &totals) < 0)
            goto fail;
        if (!rows->held || !ts->held || !values->held) {
            PyErr_SetString(PyExc_ValueError, "fold_start: rows, ts and values are arrays");
            goto fail;
        }
        part->n = rows->view.len / 8;
        if (ts->view.len / 8 != part->n || values->view.len / 8 != part->n) {
            PyErr_SetString(PyExc_ValueError, "rows, ts and values differ in length");
            goto fail;
        }
        part->rows = rows->view.buf;
        part->ts = ts->view.buf;
        part->values = values->view.buf;
        part->last_write = last->held ? last->view.buf : NULL;
        part->totals = totals->held ? totals->view.buf : NULL;
        part->rows_held = PY_SSIZE_T_MAX;
        if (part->last_write)
            part->rows_held = last->view.len / 8;
        if (part->totals && totals->view.len / 16 < part->rows_held)
            part->rows_held = totals->view.len / 16;
        PyObject *seq = PySequence_Fast(tiers, "tiers must be a sequence");
        if (seq == NULL)
            goto fail;
        part->ntiers = 0;
        for (Py_ssize_t t = 0; t < PySequence_Fast_GET_SIZE(seq); t++) {
            TierSpec *tier = &part->tiers[part->ntiers];
            PyObject *o_starts, *o_data, *o_cells, *o_sketches = Py_None;
            Buf *starts, *data;
            if (part->ntiers == MAX_TIERS) {
                PyErr_SetString(PyExc_ValueError, "fold_start: too many tiers");
                Py_DECREF(seq);
                goto fail;
            }
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, t), "LLOO(iiiiii)O|O", &tier->res, &tier->oldest,
                                  &o_starts, &o_data, &tier->off[0], &tier->off[1], &tier->off[2], &tier->off[3],
                                  &tier->off[4], &tier->off[5], &o_cells, &o_sketches) ||
                job_buf(j, o_starts, 8, "starts", &starts) < 0 || job_buf(j, o_data, 8, "data", &data) < 0) {
                Py_DECREF(seq);
                goto fail;
            }
            if (o_cells != Py_None || o_sketches != Py_None || !starts->held || !data->held || tier->res <= 0 ||
                tier->off[0] < 0 || data->view.ndim != 3 ||
                starts->view.len / 8 != data->view.shape[1]) {
                PyErr_SetString(PyExc_ValueError,
                                "fold_start: a tier needs res > 0, starts, 3-d data and a count, and no cells");
                Py_DECREF(seq);
                goto fail;
            }
            tier->starts = starts->view.buf;
            tier->data = data->view.buf;
            tier->capacity = data->view.shape[0];
            tier->columns = data->view.shape[1];
            tier->width = data->view.shape[2];
            part->ntiers++;
        }
        Py_DECREF(seq);
    }
    Py_DECREF(parts);
    pthread_mutex_lock(&job.lock);
    if (!job.started) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        job.spin = job.spin_allowed && can_spin();
        job.started = pthread_create(&thread, &attr, fold_worker, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    if (job.started) {
        __atomic_store_n(&job.posted, job.posted + 1, __ATOMIC_RELEASE);
        pthread_cond_signal(&job.wake);
        pthread_mutex_unlock(&job.lock);
    } else { /* no thread to be had: fold here (the queue is empty: nothing was ever posted) */
        pthread_mutex_unlock(&job.lock);
        run_job(j);
        release(j->bufs, j->nbufs);
        j->nbufs = 0;
    }
    Py_RETURN_NONE;
fail:
    Py_DECREF(parts);
    release(j->bufs, j->nbufs);
    j->nbufs = 0;
    return NULL;
}

/* ---- series key -> code ---------------------------------------------------------------------
 *
 * The store's series codes (series key -> row << kind bits | kind), kept here beside its dict so
 * that a batch's lookups can be prefetched: one at a time in a dict, the misses on a table the
 * ring writes keep evicting were ~8 % of in-process ingest. Keys are str (their hash is cached);
 * the parser hands the same key objects each time, so a match is nearly always by identity.
 *
 * code_table() -> capsule; code_set(table, key, code); code_delete(table, key);
 * lookup(table, keys: list[str], out: int64[n]) -> whether any was missing (out[i] = -1 there).
 */

typedef struct {
    PyObject *key; /* NULL: never used; DELETED: freed */
    Py_hash_t hash;
    int64_t code;
} CodeSlot;

typedef struct {
    CodeSlot *slots;
    Py_ssize_t cap, used, filled; /* filled: used + deleted */
} Codes;

static char deleted_marker;
#define DELETED ((PyObject *)&deleted_marker)

static void
codes_free(PyObject *capsule)
{
    Codes *t = PyCapsule_GetPointer(capsule, "rtanalytics.code_table");
    if (t == NULL)
        return;
    for (Py_ssize_t i = 0; i < t->cap; i++)
        if (t->slots[i].key != NULL && t->slots[i].key != DELETED)
            Py_DECREF(t->slots[i].key);
    PyMem_Free(t->slots);
    PyMem_Free(t);
}

static PyObject *
code_table(PyObject *self, PyObject *unused)
{
    Codes *t = PyMem_Calloc(1, sizeof(Codes));
    CodeSlot *slots = PyMem_Calloc(1024, sizeof(CodeSlot));
    if (t == NULL || slots == NULL) {
        PyMem_Free(t);
        PyMem_Free(slots);
        return PyErr_NoMemory();
    }
    t->slots = slots;
    t->cap = 1024;
    PyObject *capsule = PyCapsule_New(t, "rtanalytics.code_table", codes_free);
    if (capsule == NULL) {
        PyMem_Free(slots);
        PyMem_Free(t);
    }
    return capsule;
}

/* The slot holding key, or NULL (no error) when it is not there; *free_at: where it would go. */
static CodeSlot *
codes_find(Codes *t, PyObject *key, Py_hash_t hash, CodeSlot **free_at)
{
    Py_ssize_t mask = t->cap - 1;
    CodeSlot *first_deleted = NULL;
    for (Py_ssize_t i = (Py_ssize_t)((size_t)hash & (size_t)mask);; i = (i + 1) & mask) {
        CodeSlot *slot = &t->slots[i];
        if (slot->key == NULL) {
            if (free_at)
                *free_at = first_deleted ? first_deleted : slot;
            return NULL;
        }
        if (slot->key == DELETED) {
            if (first_deleted == NULL)
                first_deleted = slot;
            continue;
        }
        if (slot->key == key)
            return slot;
        if (slot->hash == hash) {
            int eq = PyUnicode_Compare(slot->key, key);
            if (eq == -1 && PyErr_Occurred())
                return NULL;
            if (eq == 0)
                return slot;
        }
    }
}

static int
codes_resize(Codes *t)
{
    Py_ssize_t cap = 1024;
    while (cap < t->used * 4)
        cap *= 2;
    CodeSlot *slots = PyMem_Calloc(cap, sizeof(CodeSlot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->cap; i++) {
        CodeSlot *old = &t->slots[i];
        if (old->key == NULL || old->key == DELETED)
            continue;
        Py_ssize_t j = (Py_ssize_t)((size_t)old->hash & (size_t)(cap - 1));
        while (slots[j].key != NULL)
            j = (j + 1) & (cap - 1);
        slots[j] = *old;
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->cap = cap;
    t->filled = t->used;
    return 0;
}

static Codes *
codes_arg(PyObject *capsule, PyObject *key, Py_hash_t *hash)
{
    Codes *t = PyCapsule_GetPointer(capsule, "rtanalytics.code_table");
    if (t == NULL)
        return NULL;
    if (key != NULL) {
        if (!PyUnicode_CheckExact(key)) {
            PyErr_SetString(PyExc_TypeError, "series keys are str");
            return NULL;
        }
        if ((*hash = PyObject_Hash(key)) == -1)
            return NULL;
    }
    return t;
}

static PyObject *
code_set(PyObject *self, PyObject *args)
{
    PyObject *capsule, *key;
    long long code;
    Py_hash_t hash;
    if (!PyArg_ParseTuple(args, "OOL", &capsule, &key, &code))
        return NULL;
    Codes *t = codes_arg(capsule, key, &hash);
    if (t == NULL)
        return NULL;
    if ((t->filled + 1) * 2 > t->cap && codes_resize(t) < 0)
        return NULL;
    CodeSlot *free_at = NULL;
    CodeSlot *slot = codes_find(t, key, hash, &free_at);
    if (slot == NULL) {
        if (PyErr_Occurred())
            return NULL;
        if (free_at->key == NULL)
            t->filled++;
        free_at->key = Py_NewRef(key);
        free_at->hash = hash;
        t->used++;
        slot = free_at;
    }
    slot->code = code;
    Py_RETURN_NONE;
}

static PyObject *
code_delete(PyObject *self, PyObject *args)
{
    PyObject *capsule, *key;
    Py_hash_t hash;
    if (!PyArg_ParseTuple(args, "OO", &capsule, &key))
        return NULL;
    Codes *t = codes_arg(capsule, key, &hash);
    if (t == NULL)
        return NULL;
    CodeSlot *slot = codes_find(t, key, hash, NULL);
    if (slot == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    Py_DECREF(slot->key);
    slot->key = DELETED;
    t->used--;
    Py_RETURN_NONE;
}

static PyObject *
lookup(PyObject *self, PyObject *args)
{
    PyObject *capsule, *keys, *o_out;
    if (!PyArg_ParseTuple(args, "OO!O", &capsule, &PyList_Type, &keys, &o_out))
        return NULL;
    Codes *t = codes_arg(capsule, NULL, NULL);
    if (t == NULL)
        return NULL;
    Buf out;
    memset(&out, 0, sizeof out);
    if (get_buf(o_out, &out, 8, "out") < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    Py_hash_t *hashes = PyMem_Malloc((n ? n : 1) * sizeof(Py_hash_t));
    PyObject *result = NULL;
    if (out.view.len / 8 != n || hashes == NULL) {
        if (hashes == NULL)
            PyErr_NoMemory();
        else
            PyErr_SetString(PyExc_ValueError, "keys and out differ in length");
        goto done;
    }
    /* First every key's hash (its str a few keys ahead prefetched), each slot prefetched; then
       the probes, which find their slots in the cache. */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            __builtin_prefetch(PyList_GET_ITEM(keys, i + PREFETCH_AHEAD));
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (!PyUnicode_CheckExact(key)) {
            PyErr_SetString(PyExc_TypeError, "series keys are str");
            goto done;
        }
        if ((hashes[i] = PyObject_Hash(key)) == -1)
            goto done;
        __builtin_prefetch(&t->slots[(size_t)hashes[i] & (size_t)(t->cap - 1)]);
    }
    int64_t *codes = out.view.buf;
    int missing = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        CodeSlot *slot = codes_find(t, PyList_GET_ITEM(keys, i), hashes[i], NULL);
        if (slot == NULL) {
            if (PyErr_Occurred())
                goto done;
            codes[i] = -1;
            missing = 1;
        } else {
            codes[i] = slot->code;
        }
    }
    result = PyBool_FromLong(missing);
done:
    PyMem_Free(hashes);
    release(&out, 1);
    return result;
}

/*
 * window_fold(data, columns, rows, groups, cols, offsets, out) -> None
 *   The read side: every bucket cols[k] of every row rows[i] merged into out[groups[i]] --
 *   count and sum added, min and max kept, last the value at the latest last_ts (ties to the
 *   larger value), as states.Partials.merge does. data: float64[capacity, columns, width];
 *   rows, groups: int64[n]; cols: int64[m]; offsets as for fold; out: float64[groups, width],
 *   filled with the empty state by the caller. A trailing window's read of 1,000 rows x 43
 *   columns this way replaces a gather of the block and a dozen reductions of it.
 */
static int
get_rbuf(PyObject *obj, Buf *buf, const char *what)
{
    buf->held = 0;
    if (PyObject_GetBuffer(obj, &buf->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    buf->held = 1;
    if (buf->view.itemsize != 8) {
        PyErr_Format(PyExc_TypeError, "%s: expected 8-byte items", what);
        return -1;
    }
    return 0;
}

static PyObject *
window_fold(PyObject *self, PyObject *args)
{
    PyObject *o_data, *o_rows, *o_groups, *o_cols, *o_offsets, *o_out;
    Py_ssize_t columns;
    if (!PyArg_ParseTuple(args, "OnOOOOO", &o_data, &columns, &o_rows, &o_groups, &o_cols, &o_offsets, &o_out))
        return NULL;
    Py_ssize_t at[6];
    if (!PyArg_ParseTuple(o_offsets, "nnnnnn", &at[0], &at[1], &at[2], &at[3], &at[4], &at[5]))
        return NULL;
    Buf b[5];
    memset(b, 0, sizeof b);
    PyObject *result = NULL;
    if (get_rbuf(o_data, &b[0], "data") < 0 || get_rbuf(o_rows, &b[1], "rows") < 0 ||
        get_rbuf(o_groups, &b[2], "groups") < 0 || get_rbuf(o_cols, &b[3], "cols") < 0 ||
        get_buf(o_out, &b[4], 8, "out") < 0)
        goto done;
    Py_ssize_t width = 0;
    for (int f = 0; f < 6; f++)
        if (at[f] + 1 > width)
            width = at[f] + 1;
    Py_ssize_t n = b[1].view.len / 8, m = b[3].view.len / 8;
    Py_ssize_t capacity = columns > 0 && width > 0 ? b[0].view.len / 8 / (columns * width) : 0;
    Py_ssize_t groups_held = width > 0 ? b[4].view.len / 8 / width : 0;
    if (b[2].view.len / 8 != n || width == 0 || b[0].view.len / 8 != capacity * columns * width) {
        PyErr_SetString(PyExc_ValueError, "window_fold: rows and groups differ, or data is not capacity x columns x width");
        goto done;
    }
    const double *data = b[0].view.buf;
    const int64_t *rows = b[1].view.buf, *groups = b[2].view.buf, *cols = b[3].view.buf;
    double *out = b[4].view.buf;
    for (Py_ssize_t k = 0; k < m; k++)
        if (cols[k] < 0 || cols[k] >= columns) {
            PyErr_SetString(PyExc_IndexError, "window_fold: a column outside the ring");
            goto done;
        }
    const Py_ssize_t count = at[0], sum = at[1], lo = at[2], hi = at[3], last = at[4], last_ts = at[5];
    for (Py_ssize_t i = 0; i < n; i++) {
        if (rows[i] < 0 || rows[i] >= capacity || groups[i] < 0 || groups[i] >= groups_held) {
            PyErr_SetString(PyExc_IndexError, "window_fold: a row or group out of range");
            goto done;
        }
        if (i + 2 < n && rows[i + 2] >= 0 && rows[i + 2] < capacity)
            for (Py_ssize_t k = 0; k < m; k += 4)
                __builtin_prefetch(data + (rows[i + 2] * columns + cols[k]) * width);
        const double *row = data + rows[i] * columns * width;
        double *acc = out + groups[i] * width;
        for (Py_ssize_t k = 0; k < m; k++) {
            const double *cell = row + cols[k] * width;
            if (count >= 0)
                acc[count] += cell[count];
            if (sum >= 0)
                acc[sum] += cell[sum];
            if (lo >= 0 && cell[lo] < acc[lo])
                acc[lo] = cell[lo];
            if (hi >= 0 && cell[hi] > acc[hi])
                acc[hi] = cell[hi];
            if (last >= 0 && last_ts >= 0 &&
                (cell[last_ts] > acc[last_ts] || (cell[last_ts] == acc[last_ts] && cell[last] > acc[last]))) {
                acc[last_ts] = cell[last_ts];
                acc[last] = cell[last];
            }
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    release(b, 5);
    return result;
}

static PyMethodDef methods[] = {
    {"fold", fold, METH_VARARGS, "Fold numeric points into the bucket rings of every tier."},
    {"fold_start", fold_start, METH_O, "fold() of tables without quantile cells, on the worker thread."},
    {"fold_wait", fold_wait, METH_NOARGS, "Wait for the fold started last, and release its arrays."},
    {"fold_test_delay", fold_test_delay, METH_O, "Tests only: the worker sleeps this long before a fold."},
    {"fold_pending", fold_pending, METH_NOARGS, "How many folds started are not done yet."},
    {"fold_spins", fold_spins, METH_NOARGS, "Whether the worker (started) and fold_wait spin before sleeping."},
    {"fold_allow_spin", fold_allow_spin, METH_O, "Whether the worker and fold_wait may spin (with 2+ CPUs)."},
    {"window_fold", window_fold, METH_VARARGS, "Merge buckets of rows into per-group states."},
    {"lookup", lookup, METH_VARARGS, "Series codes of series keys; -1 where unknown."},
    {"code_table", code_table, METH_NOARGS, "An empty table of series codes."},
    {"code_set", code_set, METH_VARARGS, "Set a series key's code."},
    {"code_delete", code_delete, METH_VARARGS, "Forget a series key."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__kernel(void)
{
    pthread_atfork(NULL, NULL, fold_after_fork);
    return PyModule_Create(&module);
}
