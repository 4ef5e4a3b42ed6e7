"""Demo fish classifier: synthetic fish photos and a small MobileNetV2 trained on them."""
