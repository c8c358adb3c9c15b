"""What only makes a policy faster or lets it run sharded; none of it changes a number (each
module is tested against the plain path):

    frozen_layers.py  the frozen lower layers' activations computed once and kept (`FrozenLayerCache`)
    blocks.py         a model's layer stack, the one place that knows where it lives
    kv_cache.py       a prompt's keys and values shared by the outputs sampled after it
    output_layer.py   the output layer fused into the loss (no full logits tensor)
    sharding.py       FSDP2 and DeepSpeed ZeRO-3: whole weights to generate and to save
"""
