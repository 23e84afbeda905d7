/* C references for the kiln benchmark (bench/run.py), fast-math part.
 *
 * Built with `gcc -O3 -march=native -ffast-math` (plus -fopenmp for the
 * parallel library): the counterparts of the kernels kiln compiles with
 * fastmath=True, so the compiler may reassociate and vectorise the
 * float32 reductions.
 */

float
sum_f32(const float *restrict a, long n)
{
    float s = 0.0f;
#pragma omp parallel for schedule(static) reduction(+:s)
    for (long i = 0; i < n; i++) {
        s += a[i];
    }
    return s;
}

float
dot_f32(const float *restrict a, const float *restrict b, long n)
{
    float s = 0.0f;
#pragma omp parallel for schedule(static) reduction(+:s)
    for (long i = 0; i < n; i++) {
        s += a[i] * b[i];
    }
    return s;
}
