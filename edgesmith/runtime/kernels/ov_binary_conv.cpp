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

#include <cstdlib>
#include <memory>
#include <mutex>

namespace edgesmith {

class BinaryConv : public ov::op::Op {
public:
    OPENVINO_OP("BinaryConv", "edgesmith");

    BinaryConv() = default;
    explicit BinaryConv(const ov::OutputVector& args) : Op(args) { constructor_validate_and_infer_types(); }

    // Every attribute and every size is checked before memory is touched: a malformed node (a zero stride or
    // group, short packed weights, a kernel larger than the input) is one clear error naming the node.
    void check_attributes() const {
        NODE_VALIDATION_CHECK(this, get_input_size() == 5, "edgesmith.BinaryConv takes 5 inputs (X, W, alpha, beta, bias), got ", get_input_size());
        NODE_VALIDATION_CHECK(this, group >= 1 && group <= (1 << 20), "group must be at least 1, got ", group);
        NODE_VALIDATION_CHECK(this, stride_h >= 1 && stride_w >= 1 && stride_h <= (1 << 20) && stride_w <= (1 << 20), "strides must be at least 1, got ", stride_h, "x", stride_w);
        NODE_VALIDATION_CHECK(this, dilation_h >= 1 && dilation_w >= 1 && dilation_h <= (1 << 20) && dilation_w <= (1 << 20), "dilations must be at least 1, got ", dilation_h, "x", dilation_w);
        NODE_VALIDATION_CHECK(this, pad_h >= 0 && pad_w >= 0 && pad_h <= (1 << 20) && pad_w <= (1 << 20), "pads must be 0 or more, got ", pad_h, "x", pad_w);
        NODE_VALIDATION_CHECK(this, channels >= 1 && channels % group == 0, "channels (", channels, ") must be a positive multiple of group (", group, ")");
    }

    // The weights' shape against the attributes: [O, KH, KW, 8 * ceil(C / group / 64)] bytes, O a multiple of group.
    void check_weights(const ov::Shape& w) const {
        NODE_VALIDATION_CHECK(this, w.size() == 4, "packed weights must be [O, KH, KW, bytes], got rank ", w.size());
        const int64_t cw = (channels / group + 63) / 64;
        NODE_VALIDATION_CHECK(this, static_cast<int64_t>(w[3]) == 8 * cw, "packed weights carry ", w[3], " bytes per tap; ", channels / group,
                              " channels per group need ", 8 * cw);
        NODE_VALIDATION_CHECK(this, w[0] >= 1 && static_cast<int64_t>(w[0]) % group == 0, "output channels (", w[0], ") must be a positive multiple of group");
        NODE_VALIDATION_CHECK(this, w[1] >= 1 && w[2] >= 1 && w[1] <= 64 && w[2] <= 64, "kernel ", w[1], "x", w[2], " must be 1 to 64 wide and high");
    }

    void validate_and_infer_types() override {
        check_attributes();
        const auto& xs = get_input_partial_shape(0);
        const auto& ws = get_input_partial_shape(1);
        ov::PartialShape out = ov::PartialShape::dynamic(4);
        if (ws.is_static()) check_weights(ws.to_shape());
        if (xs.rank().is_static()) NODE_VALIDATION_CHECK(this, xs.rank().get_length() == 4, "X must be NCHW (rank 4), got rank ", xs.rank().get_length());
        if (xs.rank().is_static() && xs[1].is_static())
            NODE_VALIDATION_CHECK(this, xs[1].get_length() == channels, "X has ", xs[1].get_length(), " channels, the node says ", channels);
        if (xs.rank().is_static() && ws.rank().is_static() && ws.is_static() && xs.rank().get_length() == 4) {
            const auto w = ws.to_shape();
            out[0] = xs[0];
            out[1] = static_cast<int64_t>(w[0]);
            for (int d = 0; d < 2; ++d) {
                const int64_t k = static_cast<int64_t>(w[1 + d]);
                const int64_t s = d ? stride_w : stride_h, p = d ? pad_w : pad_h, dl = d ? dilation_w : dilation_h;
                if (xs[2 + d].is_static()) {
                    const int64_t span = xs[2 + d].get_length() + 2 * p - dl * (k - 1) - 1;
                    NODE_VALIDATION_CHECK(this, span >= 0, "a ", w[1], "x", w[2], " kernel (dilation ", dl, ") does not fit the padded input");
                    out[2 + d] = span / s + 1;
                }
            }
        }
        set_output_type(0, ov::element::f32, out);
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        // NOTE: attributes first, then inputs and validation (a constructor with inputs would validate the defaults)
        auto op = std::make_shared<BinaryConv>();
        op->channels = channels; op->group = group; op->stride_h = stride_h; op->stride_w = stride_w;
        op->pad_h = pad_h; op->pad_w = pad_w; op->dilation_h = dilation_h; op->dilation_w = dilation_w;
        op->set_arguments(args);
        op->constructor_validate_and_infer_types();
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
        check_attributes();
        OPENVINO_ASSERT(inputs.size() == 5 && outputs.size() == 1, "edgesmith.BinaryConv ", get_friendly_name(), ": 5 inputs and 1 output expected");
        const auto xs = inputs[0].get_shape();
        const auto wsh = inputs[1].get_shape();
        check_weights(wsh);
        OPENVINO_ASSERT(xs.size() == 4, "edgesmith.BinaryConv ", get_friendly_name(), ": X must be rank 4");
        OPENVINO_ASSERT(inputs[0].get_element_type() == ov::element::f32 && inputs[1].get_element_type() == ov::element::u8,
                        "edgesmith.BinaryConv ", get_friendly_name(), ": X must be f32 and W u8");
        const int64_t n = xs[0], c = xs[1], h = xs[2], wd = xs[3];
        const int64_t o = wsh[0], kh = wsh[1], kw = wsh[2], cw = wsh[3] / 8;  // uint8 bytes of 64-bit words
        const int64_t g = group, cg = c / g, og = o / g;
        OPENVINO_ASSERT(c == channels && inputs[1].get_byte_size() == static_cast<size_t>(o * kh * kw * cw * 8),
                        "edgesmith.BinaryConv ", get_friendly_name(), ": X has ", c, " channels (node: ", channels, "), W ", inputs[1].get_byte_size(), " bytes");
        for (int i = 2; i < 5; ++i)
            OPENVINO_ASSERT(inputs[i].get_element_type() == ov::element::f32 && inputs[i].get_size() == static_cast<size_t>(i == 3 ? c : o),
                            "edgesmith.BinaryConv ", get_friendly_name(), ": ", (i == 2 ? "alpha" : i == 3 ? "beta" : "bias"), " must be f32 with ",
                            (i == 3 ? c : o), " values, got ", inputs[i].get_size());
        const int64_t span_h = h + 2 * pad_h - dilation_h * (kh - 1) - 1, span_w = wd + 2 * pad_w - dilation_w * (kw - 1) - 1;
        OPENVINO_ASSERT(n >= 1 && span_h >= 0 && span_w >= 0, "edgesmith.BinaryConv ", get_friendly_name(), ": the kernel does not fit the input");
        const int64_t oh = span_h / stride_h + 1;
        const int64_t ow = span_w / stride_w + 1;
        outputs[0].set_shape(ov::Shape{static_cast<size_t>(n), static_cast<size_t>(o), static_cast<size_t>(oh), static_cast<size_t>(ow)});
        const float* x = inputs[0].data<const float>();
        const uint8_t* w = inputs[1].data<const uint8_t>();
        const float* alpha = inputs[2].data<const float>();
        const float* beta = inputs[3].data<const float>();
        const float* bias = inputs[4].data<const float>();
        float* y = outputs[0].data<float>();
        const auto prepared = prepare(w, o, kh, kw, cw, og);  // a snapshot: another thread's prepare cannot free it under us
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
            const auto& prep = (*prepared)[gi];
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
        // edgesmith checks the variable before loading this library (environment.bnn_threads); bounded again here
        const char* env = std::getenv("EDGESMITH_BNN_THREADS");
        if (!env || !*env) return 1;
        char* end = nullptr;
        const long n = std::strtol(env, &end, 10);
        return (*end != '\0' || n < 1) ? 1 : static_cast<int>(std::min(n, 1024L));
    }

    using Prepared = std::vector<std::pair<std::vector<uint64_t>, std::vector<int64_t>>>;

    // The interleaved weights, prepared once per weight buffer (a constant) and shared: each call holds its own
    // reference, so a concurrent inference preparing other weights never frees the ones in use.
    std::shared_ptr<const Prepared> prepare(const uint8_t* bytes, int64_t o, int64_t kh, int64_t kw, int64_t cw, int64_t og) const {
        std::lock_guard<std::mutex> lock(mutex_);
        if (prepared_ && prepared_from_ == bytes && prepared_size_ == o * kh * kw * cw) return prepared_;
        auto fresh = std::make_shared<Prepared>();
        std::vector<uint64_t> words(static_cast<size_t>(o * kh * kw * cw));
        std::memcpy(words.data(), bytes, words.size() * sizeof(uint64_t));  // aligned words (little-endian x86)
        const uint64_t* w = words.data();
        for (int64_t gi = 0; gi < o / og; ++gi) {
            std::vector<uint64_t> wb(static_cast<size_t>((og + 7) / 8 * kh * kw * cw * 8));
            std::vector<int64_t> pop(static_cast<size_t>(og * kh * kw));
            bnn_prepare_conv(w + gi * og * kh * kw * cw, og, kh, kw, cw, wb.data(), pop.data());
            fresh->emplace_back(std::move(wb), std::move(pop));
        }
        prepared_ = fresh;
        prepared_from_ = bytes;
        prepared_size_ = o * kh * kw * cw;
        return prepared_;
    }

    mutable std::mutex mutex_;
    mutable std::shared_ptr<const Prepared> prepared_;
    mutable const uint8_t* prepared_from_ = nullptr;
    mutable int64_t prepared_size_ = 0;
};

}  // namespace edgesmith

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>({
    std::make_shared<ov::OpExtension<edgesmith::BinaryConv>>(),
    std::make_shared<ov::frontend::onnx::OpExtension<edgesmith::BinaryConv>>("BinaryConv", "edgesmith"),
}));
