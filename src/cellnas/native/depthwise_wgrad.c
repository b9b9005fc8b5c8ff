/* Weight gradient of a stride-1 depthwise convolution on channels_last float32 maps (cellnas.native).
 *
 * dW[i][j][c] = sum over n, h, w of g[n, h, w, c] * x[n, h + i*d - p, w + j*d - p, c]   (zero outside the map)
 *
 * x and g are dense (N, H, W, C) arrays (a channels_last tensor's memory), the result is (k*k, C). oneDNN's own
 * kernel for this is slow for 5x5 and dilated kernels on CPU; here, for each row of g and each kernel row, the
 * k taps of a kernel row are accumulated together over the row in 16-channel vectors held in registers. The
 * batch is split over `threads` threads, each with its own accumulator; their sums are added at the end. Built
 * with -fopenmp, the threads are those of the OpenMP runtime PyTorch runs on; otherwise POSIX threads started per
 * call.
 * Float sums are taken in another order than oneDNN's: equal up to rounding.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *x, *g;
    float *acc;
    long n0, n1, H, W, C;
    int k, d, p;
} job_t;

#define CB 16

#define MAXK 7

typedef float v16 __attribute__((vector_size(64), aligned(4)));

static inline __attribute__((always_inline)) long rows(const int k, const float *grow, const float *xrow, float *a,
                                                       long W, long C, long lo, long hi, const long *off) {
    long c0 = 0;
    for (; c0 + CB <= C; c0 += CB) {
        v16 s[MAXK];
        for (int j = 0; j < k; j++) s[j] = (v16){0};
        for (long w = lo; w < hi; w++) {
            const v16 gv = *(const v16 *)(grow + w * C + c0);
            for (int j = 0; j < k; j++) s[j] += gv * *(const v16 *)(xrow + (w + off[j]) * C + c0);
        }
        for (long w = 0; w < W; w++) {
            if (w == lo) w = hi;
            if (w >= W) break;
            const v16 gv = *(const v16 *)(grow + w * C + c0);
            for (int j = 0; j < k; j++) {
                const long ww = w + off[j];
                if (ww < 0 || ww >= W) continue;
                s[j] += gv * *(const v16 *)(xrow + ww * C + c0);
            }
        }
        for (int j = 0; j < k; j++) {
            v16 *dst = (v16 *)(a + j * C + c0);
            *dst += s[j];
        }
    }
    return c0;
}

static void *work(void *arg) {
    job_t *J = (job_t *)arg;
    const long H = J->H, W = J->W, C = J->C;
    const int k = J->k, d = J->d, p = J->p;
    long off[MAXK];
    for (int j = 0; j < k; j++) off[j] = (long)j * d - p;
    /* pixels w where every tap of a row reads inside the image */
    const long lo = p < W ? p : W, hi = W - p > lo ? W - p : lo;
    for (long n = J->n0; n < J->n1; n++) {
        for (long h = 0; h < H; h++) {
            const float *grow = J->g + (n * H + h) * W * C;
            for (int i = 0; i < k; i++) {
                const long hh = h + (long)i * d - p;
                if (hh < 0 || hh >= H) continue;
                const float *xrow = J->x + (n * H + hh) * W * C;
                float *a = J->acc + (long)i * k * C;
                long c0 = 0;
                switch (k) {
                case 3: c0 = rows(3, grow, xrow, a, W, C, lo, hi, off); break;
                case 5: c0 = rows(5, grow, xrow, a, W, C, lo, hi, off); break;
                case 7: c0 = rows(7, grow, xrow, a, W, C, lo, hi, off); break;
                default: c0 = rows(k, grow, xrow, a, W, C, lo, hi, off); break;
                }
                for (long c = c0; c < C; c++) {
                    for (int j = 0; j < k; j++) {
                        float t = 0;
                        for (long w = 0; w < W; w++) {
                            const long ww = w + off[j];
                            if (ww >= 0 && ww < W) t += grow[w * C + c] * xrow[ww * C + c];
                        }
                        a[j * C + c] += t;
                    }
                }
            }
        }
    }
    return NULL;
}

/* 1 when built with OpenMP (the threads of PyTorch's own runtime), 0 with POSIX threads started per call. */
int cellnas_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Where this library's OpenMP calls go (NULL without OpenMP): __init__.py checks that it is PyTorch's libgomp. */
#ifdef _OPENMP
#include <omp.h>
const void *cellnas_omp_symbol(void) { return (const void *)&omp_get_thread_num; }
#else
const void *cellnas_omp_symbol(void) { return NULL; }
#endif

/* dW[t, c] (t = i*k + j) of a stride-1 depthwise conv, padding p, dilation d, x and g (N, H, W, C) dense. */
int cellnas_dw_weight_grad(const float *x, const float *g, float *out, long N, long H, long W, long C, int k, int d, int p,
                   int threads) {
    if (k < 1 || k > MAXK || N < 1) return 2;
    if (threads < 1) threads = 1;
    if (threads > N) threads = (int)N;
    const long kk = (long)k * k;
    float *bufs = (float *)calloc((size_t)threads * kk * C, sizeof(float));
    job_t *jobs = (job_t *)malloc(sizeof(job_t) * threads);
    if (!bufs || !jobs) { free(bufs); free(jobs); return 1; }
    for (int t = 0; t < threads; t++)
        jobs[t] = (job_t){x, g, bufs + (long)t * kk * C, N * t / threads, N * (t + 1) / threads, H, W, C, k, d, p};
#ifdef _OPENMP
    /* the OpenMP runtime PyTorch itself runs on (libgomp, loaded once per process): its worker threads, which
     * spin for a while after each of torch's parallel regions, take these jobs instead of competing with ours */
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; t++) work(&jobs[t]);
#else
    pthread_t *tids = (pthread_t *)malloc(sizeof(pthread_t) * threads);
    char *started = (char *)calloc((size_t)threads, 1);
    if (!tids || !started) { free(bufs); free(jobs); free(tids); free(started); return 1; }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tids[t], NULL, work, &jobs[t]) == 0;
    work(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(tids[t], NULL);
        else work(&jobs[t]); /* no thread for it: do it here */
    }
    free(started);
    free(tids);
#endif
    memcpy(out, bufs, sizeof(float) * kk * C);
    for (int t = 1; t < threads; t++)
        for (long q = 0; q < kk * C; q++) out[q] += bufs[(long)t * kk * C + q];
    free(bufs); free(jobs);
    return 0;
}
