# COCO-Stuff 164k, 27 coarse classes on IIC's curated image lists (JAFAR/FeatUp/LoftUp/AnyUp).
# annotations/ holds the raw stuffthingmaps PNGs (fine ids), mapped to coarse ids on loading.
_base_ = './seg-probe_448.py'
num_classes = 27
data_root = 'data/coco_stuff164k'
train_dataloader = dict(
    dataset=dict(
        type='COCOStuff27Dataset',
        data_root=data_root,
        ann_file='curated/train2017/Coco164kFull_Stuff_Coarse.txt',
        data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017')))
val_dataloader = dict(
    dataset=dict(
        type='COCOStuff27Dataset',
        data_root=data_root,
        ann_file='curated/val2017/Coco164kFull_Stuff_Coarse.txt',
        data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017')))
test_dataloader = val_dataloader
