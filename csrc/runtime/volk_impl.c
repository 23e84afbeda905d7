/* volk_impl.c: compiles volk, the Vulkan meta-loader, into kiln._core.
 *
 * volk opens libvulkan with dlopen when kl_vk_init calls volkInitialize,
 * so the extension has no link-time dependency on Vulkan and imports on
 * machines without it.  Its entry points are hidden (-fvisibility=hidden)
 * and so cannot clash with another copy of volk in the process.  Built
 * only when setup.py found volk (KL_HAVE_VULKAN).
 */
#ifdef KL_HAVE_VULKAN
#include <volk.c>
#else
typedef int kl_volk_unused;     /* ISO C forbids an empty file */
#endif
