"""Task models: UNet segmentation, the toy classifier (and YOLO detection)."""
