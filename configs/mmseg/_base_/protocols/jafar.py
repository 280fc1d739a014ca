# Protocol "jafar": the JAFAR probe as released (PaulCouairon/JAFAR 94d4d54, evaluation/train_probes.py,
# config/eval.yaml; JAFAR Tab. 1, arXiv 2506.11136 v3). As "anyup" (448, AdamW 5e-4, wd 1e-5,
# 20 epochs, batch 2) except the scheduler: CosineAnnealingLR(T_max = 20 = num_epochs) stepped
# every ITERATION, so the lr oscillates with a 40-iteration period instead of decaying over the
# run (the bug AnyUp fixed). Kept to reproduce JAFAR's published numbers.
_base_ = './anyup.py'
param_scheduler = [dict(type='CosineAnnealingLR', T_max=20, eta_min=0.0, by_epoch=False, begin=0)]
