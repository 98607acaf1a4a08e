"""The words of the DSL: every op name a file may use, with the one-line meaning shown in errors."""

COMBINE = {
    "sum": "element-wise sum of the resampled inputs (weighted by `fusion`)",
    "global_attention": "NAS-FPN 'global pooling' as in the TF reference: "
    "coarser + finer * sigmoid(global max pool of coarser); exactly 2 inputs",
    "global_attention_mmdet": "mmdetection's GlobalPoolingCell: "
    "second + first * sigmoid(global avg pool of second); exactly 2 inputs",
    "concat": "concatenate the resampled inputs, then a 1x1 conv back to `channels`",
}

FUSION = {
    "none": "plain sum",
    "fast_normalized": "BiFPN: sum(relu(w_i) x_i) / (eps + sum relu(w_j)), one scalar per input",
    "softmax": "sum(softmax(w)_i x_i), one scalar per input",
    "channel_fast_normalized": "fast_normalized with one weight per input and channel",
    "channel_softmax": "softmax with one weight per input and channel",
    "channel_attention": "SE-style: weights per input and channel from the pooled sum, softmax over inputs",
    "spatial_attention": "AugFPN adaptive spatial fusion: a weight map per input from the concatenation",
}

UPSAMPLE = {"nearest": "nearest-neighbour", "bilinear": "bilinear, align_corners=False"}

DOWNSAMPLE = {
    "maxpool": "max-pool, kernel = stride = 2^k (ceil mode)",
    "avgpool": "average-pool, kernel = stride = 2^k (ceil mode)",
    "conv": "a learned 3x3 stride-2 conv, then max-pool for any remaining factor",
}

POST_OPS = {
    "relu": "ReLU",
    "swish": "swish / SiLU",
    "conv1x1": "1x1 conv (bias only when no norm follows)",
    "conv3x3": "3x3 conv (bias only when no norm follows)",
    "sepconv3x3": "depthwise 3x3 then pointwise 1x1 conv",
    "bn": "BatchNorm",
    "gn": "GroupNorm (32 groups; fewer for narrow widths, at least 2 channels per group)",
}
CONV_OPS = ("conv1x1", "conv3x3", "sepconv3x3")
NORM_OPS = ("bn", "gn")

EXTRA = {
    "conv": "3x3 stride-2 conv (RetinaNet P6/P7)",
    "maxpool": "2x2 stride-2 max-pool, after a 1x1 conv + BN when the source width differs (NAS-FPN, BiFPN)",
}
EXTRA_SOURCE = {
    "input": "the coarsest backbone map (C5)",
    "lateral": "the lateral of the coarsest backbone map (P5)",
}
LATERAL_WHEN = {
    "always": "apply the lateral ops to every backbone map (FPN)",
    "channels_differ": "only where the backbone width differs from `channels` (NAS-FPN, BiFPN)",
}
AGGREGATE = {
    "last": "the neck's outputs are the last stack's outputs",
    "sfam": "M2Det SFAM: per level, concatenate every stack's output, SE channel attention, 1x1 conv",
}

# Named blocks: the smallest constructs for what plain merge nodes cannot say. Each entry is
# {param: (type, default, description)}; a block node takes exactly `inputs` inputs.
BLOCKS = {
    "residual_augmentation": {
        "inputs": 1,
        "params": {
            "ratios": (list, [0.1, 0.2, 0.3], "adaptive-pool sizes as fractions of the input size"),
        },
        "about": "AugFPN residual feature augmentation: adaptive average pools at several ratios, "
        "1x1 conv each, bilinear upsample, adaptive spatial fusion",
    },
}

FEEDBACK_FUSION = {"gated": "DetectoRS: s = sigmoid(conv1x1(new)); s * new + (1 - s) * old"}

KINDS = ("genotype", "space")
