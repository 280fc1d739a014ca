# Protocol "naf": NAF's fixed probe script (valeoai/NAF ad4e24d, evaluation/eval_seg_probing.py).
# As "anyup" except the cosine is stepped every iteration with T_max = num_epochs x iterations per
# epoch: one smooth cosine over all iterations (mmengine: by_epoch with convert_to_iter_based).
_base_ = './anyup.py'
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=20, eta_min=0.0, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True)
]
