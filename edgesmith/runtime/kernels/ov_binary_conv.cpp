// OpenVINO extension: edgesmith.BinaryConv as a custom ov::op::Op whose evaluate() runs the compiled
// XNOR-popcount kernel (bnn.cpp, compiled into this library), plus the ONNX frontend mapping of the
// `edgesmith` domain node onto it. Loaded with ov.Core.add_extension(path) / convert_model(extension=path).
// Built on first use by edgesmith/runtime/kernels/ov_extension.py against the installed openvino wheel's
// headers and libraries (pip's isolated build has no openvino, so it cannot be built at install time).

#include "bnn.cpp"

#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>
#include <openvino/frontend/onnx/extension/op.hpp>
#include <openvino/op/op.hpp>

#include <mutex>

namespace edgesmith {

class BinaryConv : public ov::op::Op {
public:
    OPENVINO_OP("BinaryConv", "edgesmith");

    BinaryConv() = default;
    explicit BinaryConv(const ov::OutputVector& args) : Op(args) { constructor_validate_and_infer_types(); }

    void validate_and_infer_types() override {
        const auto& xs = get_input_partial_shape(0);
        const auto& ws = get_input_partial_shape(1);
        ov::PartialShape out = ov::PartialShape::dynamic(4);
        if (xs.rank().is_static() && ws.rank().is_static() && ws.is_static() && xs.rank().get_length() == 4) {
            const auto w = ws.to_shape();
            out[0] = xs[0];
            out[1] = static_cast<int64_t>(w[0]);
            for (int d = 0; d < 2; ++d) {
                const int64_t k = static_cast<int64_t>(w[1 + d]);
                const int64_t s = d ? stride_w : stride_h, p = d ? pad_w : pad_h, dl = d ? dilation_w : dilation_h;
                if (xs[2 + d].is_static()) out[2 + d] = (xs[2 + d].get_length() + 2 * p - dl * (k - 1) - 1) / s + 1;
            }
        }
        set_output_type(0, ov::element::f32, out);
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        auto op = std::make_shared<BinaryConv>(args);
        op->channels = channels; op->group = group; op->stride_h = stride_h; op->stride_w = stride_w;
        op->pad_h = pad_h; op->pad_w = pad_w; op->dilation_h = dilation_h; op->dilation_w = dilation_w;
        op->validate_and_infer_types();
        return op;
    }

    bool visit_attributes(ov::AttributeVisitor& v) override {
        v.on_attribute("channels", channels); v.on_attribute("group", group);
        v.on_attribute("stride_h", stride_h); v.on_attribute("stride_w", stride_w);
        v.on_attribute("pad_h", pad_h); v.on_attribute("pad_w", pad_w);
        v.on_attribute("dilation_h", dilation_h); v.on_attribute("dilation_w", dilation_w);
        return true;
    }

    bool has_evaluate() const override { return true; }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const auto xs = inputs[0].get_shape();
        const auto wsh = inputs[1].get_shape();
        const int64_t n = xs[0], c = xs[1], h = xs[2], wd = xs[3];
        const int64_t o = wsh[0], kh = wsh[1], kw = wsh[2], cw = wsh[3] / 8;  // uint8 bytes of 64-bit words
        const int64_t g = group, cg = c / g, og = o / g;
        const int64_t oh = (h + 2 * pad_h - dilation_h * (kh - 1) - 1) / stride_h + 1;
        const int64_t ow = (wd + 2 * pad_w - dilation_w * (kw - 1) - 1) / stride_w + 1;
        outputs[0].set_shape(ov::Shape{static_cast<size_t>(n), static_cast<size_t>(o), static_cast<size_t>(oh), static_cast<size_t>(ow)});
        const float* x = inputs[0].data<const float>();
        const uint8_t* w = inputs[1].data<const uint8_t>();
        const float* alpha = inputs[2].data<const float>();
        const float* beta = inputs[3].data<const float>();
        const float* bias = inputs[4].data<const float>();
        float* y = outputs[0].data<float>();
        prepare(w, o, kh, kw, cw, og);
        const int64_t hw = h * wd, plane = oh * ow;
        std::vector<float> shifted(static_cast<size_t>(n * cg * hw));
        std::vector<uint64_t> packed(static_cast<size_t>(n * hw * cw));
        std::vector<int32_t> acc(static_cast<size_t>(n * og * plane));
        for (int64_t gi = 0; gi < g; ++gi) {
            for (int64_t b = 0; b < n; ++b)
                for (int64_t ch = 0; ch < cg; ++ch) {
                    const float* src = x + (b * c + gi * cg + ch) * hw;
                    float* dst = shifted.data() + (b * cg + ch) * hw;
                    const float t = beta[gi * cg + ch];
                    for (int64_t p = 0; p < hw; ++p) dst[p] = src[p] - t;
                }
            bnn_pack_nchw(shifted.data(), n, cg, h, wd, packed.data(), 1);
            const auto& prep = prepared_[gi];
            bnn_conv2d_prepared(packed.data(), prep.first.data(), prep.second.data(), n, h, wd, cw, cg, og, kh, kw, stride_h, stride_w,
                                pad_h, pad_w, dilation_h, dilation_w, acc.data(), threads(), 0);
            for (int64_t b = 0; b < n; ++b)
                for (int64_t oc = 0; oc < og; ++oc) {
                    const int64_t full = gi * og + oc;
                    const int32_t* a = acc.data() + (b * og + oc) * plane;
                    float* out = y + (b * o + full) * plane;
                    for (int64_t p = 0; p < plane; ++p) out[p] = alpha[full] * static_cast<float>(a[p]) + bias[full];
                }
        }
        return true;
    }

    int64_t channels = 0, group = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;

private:
    // NOTE: one kernel thread by default: with 2 OpenMP threads inside OpenVINO's own TBB workers a call of the
    // digits BNN took 25 ms instead of 0.08 ms (the pools spin against each other on 2 cores)
    static int threads() {
        const char* env = std::getenv("EDGESMITH_BNN_THREADS");
        return env ? std::max(1, std::atoi(env)) : 1;
    }

    void prepare(const uint8_t* bytes, int64_t o, int64_t kh, int64_t kw, int64_t cw, int64_t og) const {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!prepared_.empty() && prepared_from_ == bytes) return;  // weights are a constant: prepare once
        prepared_.clear();
        std::vector<uint64_t> words(static_cast<size_t>(o * kh * kw * cw));
        std::memcpy(words.data(), bytes, words.size() * sizeof(uint64_t));  // aligned words (little-endian x86)
        const uint64_t* w = words.data();
        for (int64_t gi = 0; gi < o / og; ++gi) {
            std::vector<uint64_t> wb(static_cast<size_t>((og + 7) / 8 * kh * kw * cw * 8));
            std::vector<int64_t> pop(static_cast<size_t>(og * kh * kw));
            bnn_prepare_conv(w + gi * og * kh * kw * cw, og, kh, kw, cw, wb.data(), pop.data());
            prepared_.emplace_back(std::move(wb), std::move(pop));
        }
        prepared_from_ = bytes;
    }

    mutable std::mutex mutex_;
    mutable std::vector<std::pair<std::vector<uint64_t>, std::vector<int64_t>>> prepared_;
    mutable const uint8_t* prepared_from_ = nullptr;
};

}  // namespace edgesmith

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({
    std::make_shared<ov::OpExtension<edgesmith::BinaryConv>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<edgesmith::BinaryConv>>("BinaryConv", "edgesmith"),
}));
