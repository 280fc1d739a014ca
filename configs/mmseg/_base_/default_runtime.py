# Runtime shared by every anyup_dense mmseg config (registers our modules in mmseg's registries).
default_scope = 'mmseg'
custom_imports = dict(imports=['anyup_dense.integrations.mmseg'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='ProbeVisualizer', vis_backends=vis_backends, name='visualizer')
log_level = 'INFO'
load_from = None
resume = False
tta_model = dict(type='SegTTAModel')
