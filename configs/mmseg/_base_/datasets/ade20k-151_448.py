# ADE20K with 151 classes (0 = "other" is scored), as coded by JAFAR and used by AnyUp.
_base_ = './seg-probe_448.py'
num_classes = 151
data_root = 'data/ade/ADEChallengeData2016'
train_dataloader = dict(
    dataset=dict(
        type='ADE20K151Dataset',
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    dataset=dict(
        type='ADE20K151Dataset',
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
