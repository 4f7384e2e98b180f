"""AlexNet twice: as torchvision lays it out (2014), and as the 2012 paper built it (LRN, two-group convolutions)."""

from __future__ import annotations

from zoo._registry import register_model
from zoo._spec import LayerTableBuilder, ModelSpec

ALEXNET = register_model(
    ModelSpec(
        name="alexnet",
        title="AlexNet (torchvision layout, 64-192-384-256-256)",
        reference="Krizhevsky. One weird trick for parallelizing convolutional neural networks. "
        "arXiv:1404.5997, 2014 (the layout of torchvision.models.alexnet)",
        input_shape=(3, 224, 224),
        num_classes=1000,
        expected_params=61_100_840,
        expected_macs=714_188_480,
        layers=(
            LayerTableBuilder((3, 224, 224))
            .conv("conv1", 64, 11, stride=4, padding=2).relu("relu1").maxpool("pool1", 3, 2)
            .conv("conv2", 192, 5, padding=2).relu("relu2").maxpool("pool2", 3, 2)
            .conv("conv3", 384, 3, padding=1).relu("relu3")
            .conv("conv4", 256, 3, padding=1).relu("relu4")
            .conv("conv5", 256, 3, padding=1).relu("relu5").maxpool("pool5", 3, 2)
            .adaptive_avgpool("avgpool", 6)
            .flatten("flatten")
            .dropout("drop6").dense("fc6", 4096).relu("relu6")
            .dropout("drop7").dense("fc7", 4096).relu("relu7")
            .dense("fc8", 1000)
            .build()
        ),
    ),
    family=__name__,
)

ALEXNET_2012 = register_model(
    ModelSpec(
        name="alexnet-2012",
        title="AlexNet 2012 (96-256-384-384-256, LRN, two-group convolutions)",
        reference="Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural "
        "networks. NeurIPS 2012",
        input_shape=(3, 227, 227),
        num_classes=1000,
        expected_params=60_965_224,
        expected_macs=724_406_816,
        layers=(
            LayerTableBuilder((3, 227, 227))
            .conv("conv1", 96, 11, stride=4).relu("relu1").lrn("norm1").maxpool("pool1", 3, 2)
            .conv("conv2", 256, 5, padding=2, groups=2).relu("relu2").lrn("norm2").maxpool("pool2", 3, 2)
            .conv("conv3", 384, 3, padding=1).relu("relu3")
            .conv("conv4", 384, 3, padding=1, groups=2).relu("relu4")
            .conv("conv5", 256, 3, padding=1, groups=2).relu("relu5").maxpool("pool5", 3, 2)
            .flatten("flatten")
            .dense("fc6", 4096).relu("relu6").dropout("drop6")
            .dense("fc7", 4096).relu("relu7").dropout("drop7")
            .dense("fc8", 1000)
            .build()
        ),
    ),
    family=__name__,
)

# Local response normalisation of the 2012 network, in the Caffe/torch convention:
# b = a / (k + alpha / size * sum over `size` neighbouring channels of a^2) ** beta.
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0
