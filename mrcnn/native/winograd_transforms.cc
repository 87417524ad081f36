// Winograd F(m x m, 3 x 3) tile transforms as TensorFlow CPU kernels (m = 2, 4 or 6).
//
// mrcnn/model/winograd.py computes a 3 x 3 convolution as (m + 2)^2 matrix products between
// the transformed input tiles V = B^T d B and the transformed kernel U = G g G^T, then
// transforms the products back, Y = A^T M A. Its transforms as XLA-compiled slices and
// additions wrote their [t * t, tiles, C] output plane by plane, streaming the input from
// memory once per plane (36 or 64 times); here each tile is read once, transformed in a small
// buffer and written to every plane: one pass over the input and one over the output.
//
// WinogradInputTransform:  x [N, H, W, C], tile_rows [2] = (first, end)
//     -> V [t * t, N * (end - first) * tw, C], tw = ceil(W / m); tile (i, j) reads rows
//        m i - 1 .. m i + m (the "same" zero padding and the rows/columns past the image
//        read as zeros). Tiles in N, row, column order.
// WinogradOutputTransform: M [t * t, N * rows * tw, F], bias [F], out_shape [3] = (N, h, w)
//     -> Y [N, h, w, F]: tile (r, j)'s m x m block A^T M A + bias at rows m r .., columns
//        m j .., cropped to h x w (tw = ceil(w / m), h <= m * rows).
//
// Float32 only. The coefficients are those of mrcnn/model/winograd.py's _ALGORITHMS (tests
// check both against each other and against the direct convolution).

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace mrcnn {
namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;
using tensorflow::int64;

// B^T [t][t] and A^T [m][t] of F(m x m, 3 x 3), t = m + 2: F(2 x 2, 3 x 3), F(4 x 4, 3 x 3)
// (points 0, +-1, +-2, infinity) and F(6 x 6, 3 x 3) (points 0, +-1, +-2, +-1/2, infinity),
// the same as mrcnn/model/winograd.py's _ALGORITHMS. Compile-time constants, so that the
// unrolled transforms below keep only the non-zero terms.
template <int M>
struct Matrices;

template <>
struct Matrices<2> {
  static constexpr float bt[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float at[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

template <>
struct Matrices<4> {
  static constexpr float bt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0},
                                     {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                                     {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr float at[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0},
                                     {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

template <>
struct Matrices<6> {
  static constexpr float bt[8][8] = {
      {1, 0, -21.f / 4, 0, 21.f / 4, 0, -1, 0},
      {0, 1, 1, -17.f / 4, -17.f / 4, 1, 1, 0},
      {0, -1, 1, 17.f / 4, -17.f / 4, -1, 1, 0},
      {0, 1.f / 2, 1.f / 4, -5.f / 2, -5.f / 4, 2, 1, 0},
      {0, -1.f / 2, 1.f / 4, 5.f / 2, -5.f / 4, -2, 1, 0},
      {0, 2, 4, -5.f / 2, -5, 1.f / 2, 1, 0},
      {0, -2, 4, 5.f / 2, -5, -1.f / 2, 1, 0},
      {0, -1, 0, 21.f / 4, 0, -21.f / 4, 0, 1}};
  static constexpr float at[6][8] = {{1, 1, 1, 1, 1, 1, 1, 0},
                                     {0, 1, -1, 2, -2, 1.f / 2, -1.f / 2, 0},
                                     {0, 1, 1, 4, 4, 1.f / 4, 1.f / 4, 0},
                                     {0, 1, -1, 8, -8, 1.f / 8, -1.f / 8, 0},
                                     {0, 1, 1, 16, 16, 1.f / 16, 1.f / 16, 0},
                                     {0, 1, -1, 32, -32, 1.f / 32, -1.f / 32, 1}};
};

// Eight channels at a time in one register (AVX2 + FMA builds), and one at a time for the
// channels left over (or everywhere without AVX2).
#if defined(__AVX2__) && defined(__FMA__)
struct Lanes8 {
  using V = __m256;
  static constexpr int kWidth = 8;
  static V Zero() { return _mm256_setzero_ps(); }
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V Fma(float c, V x, V acc) { return _mm256_fmadd_ps(_mm256_set1_ps(c), x, acc); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
};
#endif

struct Lanes1 {
  using V = float;
  static constexpr int kWidth = 1;
  static V Zero() { return 0.0f; }
  static V Load(const float* p) { return *p; }
  static void Store(float* p, V v) { *p = v; }
  static V Fma(float c, V x, V acc) { return acc + c * x; }
  static V Add(V a, V b) { return a + b; }
};

// out = sum_j coefficients[j] * in[j], the zero coefficients skipped when unrolled.
template <class L, int N>
inline typename L::V Dot(const float (&coefficients)[N], const typename L::V (&in)[N]) {
  typename L::V acc = L::Zero();
#pragma GCC unroll 8
  for (int j = 0; j < N; ++j)
    if (coefficients[j] != 0.0f) acc = L::Fma(coefficients[j], in[j], acc);
  return acc;
}

// One tile's B^T d B for the channels at offset c: d[r * t + s] points at input pixel (r, s)
// of the tile (nullptr: a zero of the padding), V[k t + l] is written at out + (k t + l) *
// plane_stride.
template <class L, int M>
inline void InputTile(const float* const* d, int64 c, float* out, int64 plane_stride) {
  constexpr int T = M + 2;
  using V = typename L::V;
  V half[T][T];  // half[s][k] = (B^T d)[k][s]
#pragma GCC unroll 8
  for (int s = 0; s < T; ++s) {
    V column[T];
#pragma GCC unroll 8
    for (int r = 0; r < T; ++r)
      column[r] = d[r * T + s] != nullptr ? L::Load(d[r * T + s] + c) : L::Zero();
#pragma GCC unroll 8
    for (int k = 0; k < T; ++k) half[s][k] = Dot<L>(Matrices<M>::bt[k], column);
  }
#pragma GCC unroll 8
  for (int k = 0; k < T; ++k) {
    V row[T];
#pragma GCC unroll 8
    for (int s = 0; s < T; ++s) row[s] = half[s][k];
#pragma GCC unroll 8
    for (int l = 0; l < T; ++l)
      L::Store(out + (k * T + l) * plane_stride, Dot<L>(Matrices<M>::bt[l], row));
  }
}

// One tile's A^T M A + bias for the filters at offset f: M[k] at products + k *
// plane_stride; output pixel (a, b) written at y[a * m + b] (nullptr: outside the image).
template <class L, int M>
inline void OutputTile(const float* products, int64 plane_stride, const float* bias,
                       float* const* y, int64 f) {
  constexpr int T = M + 2;
  using V = typename L::V;
  V half[M][T];  // (A^T M)[a][l]
#pragma GCC unroll 8
  for (int l = 0; l < T; ++l) {
    V column[T];
#pragma GCC unroll 8
    for (int k = 0; k < T; ++k) column[k] = L::Load(products + (k * T + l) * plane_stride + f);
#pragma GCC unroll 8
    for (int a = 0; a < M; ++a) half[a][l] = Dot<L>(Matrices<M>::at[a], column);
  }
  const V b = L::Load(bias + f);
#pragma GCC unroll 8
  for (int a = 0; a < M; ++a)
#pragma GCC unroll 8
    for (int s = 0; s < M; ++s)
      if (y[a * M + s] != nullptr)
        L::Store(y[a * M + s] + f, L::Add(Dot<L>(Matrices<M>::at[s], half[a]), b));
}

// Copies n floats; with AVX, by streaming stores where the destination allows (it is not
// read again by this kernel, and writing around the caches keeps the (m + 2)^2 planes,
// whose bases are a power of two apart in most layers, from evicting each other).
inline void StreamCopy(float* dst, const float* src, int64 n) {
  int64 k = 0;
#if defined(__AVX2__)
  if ((reinterpret_cast<uintptr_t>(dst) & 31) == 0) {
    for (; k + 8 <= n; k += 8) _mm256_stream_ps(dst + k, _mm256_loadu_ps(src + k));
  }
#endif
  if (k < n) std::memcpy(dst + k, src + k, (n - k) * sizeof(float));
}

inline void StreamFence() {
#if defined(__AVX2__)
  _mm_sfence();
#endif
}

// Tiles transformed together: each plane is then read or written in runs of this many tiles'
// channels, not one tile's (planes a power of two apart map to the same cache sets, and one
// tile's run per plane thrashed them). Sized so that the group's values take about 256 KiB.
inline int64 TileGroup(int t, int64 channels) {
  return std::max<int64>(1, (64 * 1024) / std::max<int64>(1, t * t * channels));
}

// Runs fn(lanes, c) over channel offsets c = 0 .. n: Lanes8 eight at a time where it can,
// Lanes1 for the rest.
template <class Fn>
inline void OverChannels(int64 n, Fn fn) {
  int64 c = 0;
#if defined(__AVX2__) && defined(__FMA__)
  for (; c + 8 <= n; c += 8) fn(Lanes8(), c);
#endif
  for (; c < n; ++c) fn(Lanes1(), c);
}

struct InputShape {
  int64 batch, height, width, channels, first, end, tiles_w, tiles;
};

// Tiles [group_begin * group, ...) of the input transform into out.
template <int M>
void InputTransformGroups(const float* in, const InputShape& shape, int64 group, float* out,
                          int64 group_begin, int64 group_stop) {
  constexpr int T = M + 2;
  const int64 channels = shape.channels, rows = shape.end - shape.first;
  std::vector<float> buffer(T * T * group * channels);
  const float* pixels[T * T];
  for (int64 g = group_begin; g < group_stop; ++g) {
    const int64 p0 = g * group, p1 = std::min(shape.tiles, p0 + group);
    for (int64 p = p0; p < p1; ++p) {
      const int64 n = p / (rows * shape.tiles_w);
      const int64 i = shape.first + (p / shape.tiles_w) % rows, j = p % shape.tiles_w;
      for (int r = 0; r < T; ++r) {
        const int64 y = M * i - 1 + r;
        for (int s = 0; s < T; ++s) {
          const int64 x = M * j - 1 + s;
          pixels[r * T + s] = (y < 0 || y >= shape.height || x < 0 || x >= shape.width)
                                  ? nullptr
                                  : in + ((n * shape.height + y) * shape.width + x) * channels;
        }
      }
      float* dst = &buffer[(p - p0) * channels];
      const int64 plane = group * channels;
      OverChannels(channels, [&](auto lanes, int64 c) {
        InputTile<decltype(lanes), M>(pixels, c, dst + c, plane);
      });
    }
    for (int k = 0; k < T * T; ++k)
      StreamCopy(out + (k * shape.tiles + p0) * channels, &buffer[k * group * channels],
                 (p1 - p0) * channels);
  }
  StreamFence();
}

struct OutputShape {
  int64 batch, height, width, filters, tile_rows, tiles_w, tiles;
};

// Tiles [group_begin * group, ...) of the output transform into out.
template <int M>
void OutputTransformGroups(const float* in, const float* bias, const OutputShape& shape,
                           int64 group, float* out, int64 group_begin, int64 group_stop) {
  constexpr int T = M + 2;
  const int64 filters = shape.filters;
  std::vector<float> buffer(T * T * group * filters);
  float* pixels[M * M];
  for (int64 g = group_begin; g < group_stop; ++g) {
    const int64 p0 = g * group, p1 = std::min(shape.tiles, p0 + group);
    for (int k = 0; k < T * T; ++k)
      std::memcpy(&buffer[k * group * filters], in + (k * shape.tiles + p0) * filters,
                  (p1 - p0) * filters * sizeof(float));
    for (int64 p = p0; p < p1; ++p) {
      const int64 n = p / (shape.tile_rows * shape.tiles_w);
      const int64 i = (p / shape.tiles_w) % shape.tile_rows, j = p % shape.tiles_w;
      for (int a = 0; a < M; ++a) {
        const int64 y = M * i + a;
        for (int b = 0; b < M; ++b) {
          const int64 x = M * j + b;
          pixels[a * M + b] = (y >= shape.height || x >= shape.width)
                                  ? nullptr
                                  : out + ((n * shape.height + y) * shape.width + x) * filters;
        }
      }
      const float* products = &buffer[(p - p0) * filters];
      const int64 plane = group * filters;
      OverChannels(filters, [&](auto lanes, int64 f) {
        OutputTile<decltype(lanes), M>(products, plane, bias, pixels, f);
      });
    }
  }
}

// An op with the output tile side as its attribute m.
class TileOp : public OpKernel {
 public:
  explicit TileOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("m", &m_));
    OP_REQUIRES(context, m_ == 2 || m_ == 4 || m_ == 6,
                InvalidArgument("Winograd output tile m must be 2, 4 or 6, got ", m_));
  }

 protected:
  int m_ = 0;
};

class WinogradInputTransformOp : public TileOp {
 public:
  using TileOp::TileOp;

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& tile_rows = context->input(1);
    OP_REQUIRES(context, x.dims() == 4,
                InvalidArgument("x must be [N, H, W, C], got shape ", x.shape().DebugString()));
    OP_REQUIRES(context, tile_rows.NumElements() == 2,
                InvalidArgument("tile_rows must be [first, end]"));
    const int m = m_, t = m + 2;
    InputShape shape;
    shape.batch = x.dim_size(0);
    shape.height = x.dim_size(1);
    shape.width = x.dim_size(2);
    shape.channels = x.dim_size(3);
    const int64 tiles_h = (shape.height + m - 1) / m;
    shape.tiles_w = (shape.width + m - 1) / m;
    const auto rows = tile_rows.flat<int32_t>();
    shape.first = rows(0);
    shape.end = rows(1);
    OP_REQUIRES(context, 0 <= shape.first && shape.first <= shape.end && shape.end <= tiles_h,
                InvalidArgument("tile_rows (", shape.first, ", ", shape.end, ") outside 0 .. ",
                                tiles_h));
    shape.tiles = shape.batch * (shape.end - shape.first) * shape.tiles_w;
    Tensor* v = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
                                0, TensorShape({t * t, shape.tiles, shape.channels}), &v));
    if (shape.tiles == 0 || shape.channels == 0) return;
    const float* in = x.flat<float>().data();
    float* out = v->flat<float>().data();
    const int64 group = TileGroup(t, shape.channels);
    auto work = [&](int64 begin, int64 stop) {
      if (m == 2) InputTransformGroups<2>(in, shape, group, out, begin, stop);
      if (m == 4) InputTransformGroups<4>(in, shape, group, out, begin, stop);
      if (m == 6) InputTransformGroups<6>(in, shape, group, out, begin, stop);
    };
    const auto& threads = *context->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads.num_threads, threads.workers, (shape.tiles + group - 1) / group,
                      /*cost_per_unit=*/10 * t * t * shape.channels * group, work);
  }
};

class WinogradOutputTransformOp : public TileOp {
 public:
  using TileOp::TileOp;

  void Compute(OpKernelContext* context) override {
    const Tensor& products = context->input(0);
    const Tensor& bias = context->input(1);
    const Tensor& out_shape = context->input(2);
    const int m = m_, t = m + 2;
    OP_REQUIRES(context, products.dims() == 3 && products.dim_size(0) == t * t,
                InvalidArgument("products must be [", t * t, ", tiles, F], got shape ",
                                products.shape().DebugString()));
    OutputShape shape;
    shape.tiles = products.dim_size(1);
    shape.filters = products.dim_size(2);
    OP_REQUIRES(context, bias.NumElements() == shape.filters,
                InvalidArgument("bias must have ", shape.filters, " values, got ",
                                bias.NumElements()));
    OP_REQUIRES(context, out_shape.NumElements() == 3,
                InvalidArgument("out_shape must be [batch, height, width]"));
    const auto size = out_shape.flat<int32_t>();
    shape.batch = size(0);
    shape.height = size(1);
    shape.width = size(2);
    OP_REQUIRES(context, shape.batch >= 0 && shape.height >= 0 && shape.width >= 0,
                InvalidArgument("out_shape must not be negative"));
    shape.tiles_w = (shape.width + m - 1) / m;
    const int64 per_row = shape.batch * shape.tiles_w;
    OP_REQUIRES(context, per_row == 0 ? shape.tiles == 0 : shape.tiles % per_row == 0,
                InvalidArgument(shape.tiles, " tiles are not ", shape.batch,
                                " images of rows of ", shape.tiles_w, " tiles"));
    shape.tile_rows = per_row == 0 ? 0 : shape.tiles / per_row;
    OP_REQUIRES(context, shape.height <= m * shape.tile_rows || shape.tiles == 0,
                InvalidArgument("out_shape height ", shape.height, " is more than the tiles' ",
                                m * shape.tile_rows));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(
        0, TensorShape({shape.batch, shape.height, shape.width, shape.filters}), &y));
    if (shape.tiles == 0 || shape.filters == 0 || shape.height == 0 || shape.width == 0) return;
    const float* in = products.flat<float>().data();
    const float* b = bias.flat<float>().data();
    float* out = y->flat<float>().data();
    const int64 group = TileGroup(t, shape.filters);
    auto work = [&](int64 begin, int64 stop) {
      if (m == 2) OutputTransformGroups<2>(in, b, shape, group, out, begin, stop);
      if (m == 4) OutputTransformGroups<4>(in, b, shape, group, out, begin, stop);
      if (m == 6) OutputTransformGroups<6>(in, b, shape, group, out, begin, stop);
    };
    const auto& threads = *context->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads.num_threads, threads.workers, (shape.tiles + group - 1) / group,
                      /*cost_per_unit=*/10 * t * t * shape.filters * group, work);
  }
};

}  // namespace

using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("MrcnnWinogradInputTransform")
    .Input("x: float")
    .Input("tile_rows: int32")
    .Attr("m: int")
    .Output("v: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
      int m;
      TF_RETURN_IF_ERROR(c->GetAttr("m", &m));
      c->set_output(0, c->MakeShape({c->MakeDim((m + 2) * (m + 2)), c->UnknownDim(),
                                     c->Dim(x, 3)}));
      return absl::OkStatus();
    })
    .Doc("Winograd F(m x m, 3 x 3) input tiles B^T d B of tile rows [first, end).");

REGISTER_OP("MrcnnWinogradOutputTransform")
    .Input("products: float")
    .Input("bias: float")
    .Input("out_shape: int32")
    .Attr("m: int")
    .Output("y: float")
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle products, out_shape;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &products));
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(2, &out_shape));
      TF_RETURN_IF_ERROR(c->WithRank(out_shape, 3, &out_shape));
      ShapeHandle y;
      TF_RETURN_IF_ERROR(c->Concatenate(out_shape, c->Vector(c->Dim(products, 2)), &y));
      c->set_output(0, y);
      return absl::OkStatus();
    })
    .Doc("Winograd F(m x m, 3 x 3) output blocks A^T M A + bias, cropped to out_shape.");

REGISTER_KERNEL_BUILDER(Name("MrcnnWinogradInputTransform").Device(DEVICE_CPU),
                        WinogradInputTransformOp);
REGISTER_KERNEL_BUILDER(Name("MrcnnWinogradOutputTransform").Device(DEVICE_CPU),
                        WinogradOutputTransformOp);

}  // namespace mrcnn
