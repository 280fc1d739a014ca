# FeatUp's JBU stack with the official DINOv2 weights (mhamilton723/FeatUp), frozen.
neck = dict(type='FeatUpNeck', backbone='dinov2', pretrained=True)
