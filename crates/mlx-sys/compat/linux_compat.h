/* Force-included into every mlx-c translation unit (and into bindgen's parse) on Linux.
 *
 * mlx-c 0.7.0 targets Apple clang: it declares its 16-bit float types only on aarch64 and
 * formats error messages with C++20 `std::format`, which GCC 12's libstdc++ lacks. This
 * header supplies both, changing nothing where the toolchain already has them.
 */
#ifndef SAEIDX_MLX_C_LINUX_COMPAT_H
#define SAEIDX_MLX_C_LINUX_COMPAT_H

#include <stdint.h>

/* IEEE half and bfloat16 values cross the C boundary as their 16 raw bits. */
#if !defined(__aarch64__) && !defined(HAS_FLOAT16)
#define HAS_FLOAT16
typedef uint16_t float16_t;
#endif
#if !defined(__aarch64__) && !defined(HAS_BFLOAT16)
#define HAS_BFLOAT16
typedef uint16_t bfloat16_t;
#endif

#ifdef __cplusplus
#include <version>
#if !defined(__cpp_lib_format)
#include <sstream>
#include <string>
#include <string_view>
namespace std {
/* Minimal stand-in for std::format: replaces each "{}" with the next argument, in order.
 * mlx-c only uses plain "{}" placeholders (error messages in mlx/c/private/io.h). */
template <typename... Args>
inline string format(string_view fmt, Args&&... args) {
  ostringstream out;
  auto emit_next = [&](auto&& value) {
    auto hole = fmt.find("{}");
    if (hole == string_view::npos) {
      return;
    }
    out << fmt.substr(0, hole) << value;
    fmt.remove_prefix(hole + 2);
  };
  (emit_next(args), ...);
  out << fmt;
  return out.str();
}
} // namespace std
#endif
#endif

#endif
