/* C references for the kiln benchmark (bench/run.py), strict IEEE part.
 *
 * Built at bench time with `gcc -O3 -march=native -ffp-contract=off` into
 * two shared libraries: one serial, one with -fopenmp (the pragmas are then
 * active).  No contraction and no reassociation, so each function computes
 * the same operations in the same order as its kiln kernel in
 * bench/kernels_kiln.py and, for the non-reductions, the same bits.
 * Arrays are C-contiguous; sizes are element counts.
 */

#include <math.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Sets the OpenMP thread count (no-op in the serial build); returns the
   count in effect. */
int
bench_set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
    return n;
#else
    (void)n;
    return 1;
#endif
}

/* Iteration count of point (cr, ci) as kiln.kernels.mandelbrot computes it:
   abs() is hypot, z * z + c the textbook complex product. */
static int64_t
mandel_point(double cr, double ci)
{
    double zr = cr, zi = ci;
    int64_t nv = 0;
    for (int i = 0; i < 1000; i++) {
        if (hypot(zr, zi) > 2.0) {
            break;
        }
        double re = zr * zr - zi * zi;
        double im = zr * zi + zi * zr;
        zr = re + cr;
        zi = im + ci;
        nv++;
    }
    return nv;
}

/* out[y, x] for an h x w grid spanning [re0, re1) x [im0, im1). */
void
mandelbrot_grid(int64_t *out, long h, long w, double re0, double re1,
                double im0, double im1)
{
#pragma omp parallel for schedule(dynamic, 1)
    for (long y = 0; y < h; y++) {
        double im = im0 + (im1 - im0) * (double)y / (double)h;
        for (long x = 0; x < w; x++) {
            double re = re0 + (re1 - re0) * (double)x / (double)w;
            out[y * w + x] = mandel_point(re, im);
        }
    }
}

void
triad(double *restrict a, const double *restrict b,
      const double *restrict c, double s, long n)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        a[i] = b[i] + s * c[i];
    }
}

double
sum_f64(const double *restrict a, long n)
{
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+:s)
    for (long i = 0; i < n; i++) {
        s += a[i];
    }
    return s;
}

double
dot_f64(const double *restrict a, const double *restrict b, long n)
{
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+:s)
    for (long i = 0; i < n; i++) {
        s += a[i] * b[i];
    }
    return s;
}

/* One Jacobi sweep of the 5-point stencil (weights 0.2) over the interior
   of the n x m array src into dst. */
static void
stencil_sweep(const float *restrict src, float *restrict dst, long n, long m)
{
#pragma omp parallel for schedule(static)
    for (long i = 1; i < n - 1; i++) {
        const float *r = src + i * m;
        for (long j = 1; j < m - 1; j++) {
            dst[i * m + j] = 0.2f * (r[j] + r[j - m] + r[j + m] + r[j - 1]
                                     + r[j + 1]);
        }
    }
}

/* sweeps sweeps alternating a -> b, b -> a (the result ends in b when
   sweeps is odd, else in a). */
void
stencil(float *a, float *b, long n, long m, int sweeps)
{
    for (int k = 0; k < sweeps; k++) {
        if (k % 2 == 0) {
            stencil_sweep(a, b, n, m);
        }
        else {
            stencil_sweep(b, a, n, m);
        }
    }
}

/* One step of n bodies: pos, vel, acc are n x 3, G = 1, softening eps2. */
void
nbody_step(double *restrict pos, double *restrict vel,
           const double *restrict mass, double *restrict acc, long n,
           double dt, double eps2)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        double xi = pos[3 * i], yi = pos[3 * i + 1], zi = pos[3 * i + 2];
        double ax = 0.0, ay = 0.0, az = 0.0;
        for (long j = 0; j < n; j++) {
            double dx = pos[3 * j] - xi;
            double dy = pos[3 * j + 1] - yi;
            double dz = pos[3 * j + 2] - zi;
            double r2 = dx * dx + dy * dy + dz * dz + eps2;
            double w = mass[j] / (r2 * sqrt(r2));
            ax += dx * w;
            ay += dy * w;
            az += dz * w;
        }
        acc[3 * i] = ax;
        acc[3 * i + 1] = ay;
        acc[3 * i + 2] = az;
    }
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) {
            vel[3 * i + k] += dt * acc[3 * i + k];
            pos[3 * i + k] += dt * vel[3 * i + k];
        }
    }
}

/* c = a @ b (a: n x p, b: p x m) by the i-k-j loop. */
void
matmul(const float *restrict a, const float *restrict b, float *restrict c,
       long n, long p, long m)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float *ci = c + i * m;
        for (long j = 0; j < m; j++) {
            ci[j] = 0.0f;
        }
        for (long k = 0; k < p; k++) {
            float aik = a[i * p + k];
            const float *bk = b + k * m;
            for (long j = 0; j < m; j++) {
                ci[j] += aik * bk[j];
            }
        }
    }
}

/* Row softmax of the n x m array x into out: exp in double as kiln's
   math.exp, the sum in double. */
void
softmax(const float *restrict x, float *restrict out, long n, long m)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        const float *xi = x + i * m;
        float *oi = out + i * m;
        float mx = xi[0];
        for (long j = 1; j < m; j++) {
            mx = xi[j] > mx ? xi[j] : mx;
        }
        double s = 0.0;
        for (long j = 0; j < m; j++) {
            double e = exp((double)(xi[j] - mx));
            oi[j] = (float)e;
            s += e;
        }
        for (long j = 0; j < m; j++) {
            oi[j] = (float)(oi[j] / s);
        }
    }
}
