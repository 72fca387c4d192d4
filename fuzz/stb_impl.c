/* stb_impl.c - stb_image's implementation, compiled with the fuzz instrumentation into
 * fuzz_image (and fuzz_cli) so that the decoder's code is covered and checked by the
 * sanitizers; these definitions take precedence over Debian's uninstrumented libstb. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
