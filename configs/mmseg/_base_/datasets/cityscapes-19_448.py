# Cityscapes fine, 19 train ids (mmseg's *_gtFine_labelTrainIds.png); only the central 448
# crop of the 448-short-side image is used, as in the JAFAR protocol.
_base_ = './seg-probe_448.py'
num_classes = 19
data_root = 'data/cityscapes'
train_dataloader = dict(
    dataset=dict(
        type='CityscapesDataset',
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train')))
val_dataloader = dict(
    dataset=dict(
        type='CityscapesDataset',
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val')))
test_dataloader = val_dataloader
