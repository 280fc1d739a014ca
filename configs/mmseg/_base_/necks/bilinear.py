# Bilinear interpolation of the ViT map to the image size (training-free baseline).
neck = dict(type='BilinearNeck')
