#!/usr/bin/python3
"""make_corpus.py - writes the seed corpora of the fuzz targets
(tests/fuzz/corpus/<name>/seed-*) from the committed test fixtures and a few
hand-made inputs. Run from anywhere: /usr/bin/python3 tests/fuzz/make_corpus.py

Each target frames its input as described at the top of its fuzz-<name>.c:
idx and cifar take a mode byte (and a 2-byte length when the input holds two
files), image takes an options byte before the file. `scripts/fuzz.sh merge`
later adds coverage-increasing inputs found by runs (named by their SHA-1),
which this script leaves alone."""
import gzip
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, '..', 'fixtures')
OUT = os.path.join(HERE, 'corpus')


def read(*p):
    with open(os.path.join(FIX, *p), 'rb') as f:
        return f.read()


def put(name, seed, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'seed-' + seed), 'wb') as f:
        f.write(data)


def two(mode, first, rest):
    return bytes([mode]) + struct.pack('<H', len(first)) + first + rest


# ---------------------------------------------------------------- npy
for fn in sorted(os.listdir(os.path.join(FIX, 'npy'))):
    if fn.endswith('.npy'):
        put('npy', fn[:-4], read('npy', fn))
put('npy', 'labels', read('torch_grad', 'smallnet', 'labels.npy'))

# ---------------------------------------------------------------- safetensors
def st(tensors, meta=None, pad=0):
    """tensors: list of (name, dtype, shape, bytes); laid out in order."""
    hdr, data = {}, b''
    if meta is not None:
        hdr['__metadata__'] = meta
    for name, dt, shape, b in tensors:
        hdr[name] = {'dtype': dt, 'shape': shape, 'data_offsets': [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(hdr, separators=(',', ':')).encode() + b' ' * pad
    return struct.pack('<Q', len(h)) + h + data

put('safetensors', 'ref', read('safetensors', 'ref.safetensors'))
put('safetensors', 'all-dtypes', st([
    ('a.f32', 'F32', [2, 2], struct.pack('<4f', 1, -2, 3.5, 0)),
    ('b.f64', 'F64', [1], struct.pack('<d', 0.25)),
    ('c.i32', 'I32', [3], struct.pack('<3i', 1, -1, 7)),
    ('d.u8', 'U8', [2, 1, 2], bytes([0, 1, 254, 255])),
    ('e.i64', 'I64', [], struct.pack('<q', -5)),
    ('f.empty', 'F32', [0, 3], b''),
], meta={'step': '10', 'model': 'wrn-16-1', 'esc\u00e9"\\': 'v\n'}, pad=3))
put('safetensors', 'meta-only', st([], meta={'format': 'pt'}))
put('safetensors', 'empty', st([]))
put('safetensors', 'zero-length', struct.pack('<Q', 0))
h = (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
     b'"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}')
put('safetensors', 'overlap2', struct.pack('<Q', len(h)) + h + bytes(8))
h = b'{"x":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}}'
put('safetensors', 'bf16', struct.pack('<Q', len(h)) + h + bytes(2))
h = b'{"\\ud83d\\ude00":{"dtype":"U8","shape":[1,1,1,1,1,1],"data_offsets":[0,1]}}'
put('safetensors', 'surrogate', struct.pack('<Q', len(h)) + h + bytes(1))

# ---------------------------------------------------------------- idx
tiny_i = read('data', 'idx', 'tiny-images-idx3-ubyte')
tiny_l = read('data', 'idx', 'tiny-labels-idx1-ubyte')
put('idx', 'raw', b'\x00' + tiny_i)
put('idx', 'raw-labels', two(1, tiny_l, tiny_i))
put('idx', 'harness-gz', two(1 | 2 | 4, tiny_l, tiny_i))
put('idx', 'file-gz', two(1, read('data', 'idx', 'tiny-labels-idx1-ubyte.gz'),
                          read('data', 'idx', 'tiny-images-idx3-ubyte.gz')))
put('idx', 'cut-gz', b'\x00' + read('data', 'idx', 'cut-images-idx3-ubyte.gz'))
put('idx', 'trunc', b'\x00' + read('data', 'idx', 'trunc-images-idx3-ubyte'))
put('idx', 'long', b'\x00' + read('data', 'idx', 'long-images-idx3-ubyte'))
put('idx', 'four-labels', two(1, read('data', 'idx', 'four-labels-idx1-ubyte'), tiny_i))
put('idx', 'one-pixel', b'\x02' + struct.pack('>IIII', 0x803, 1, 1, 1) + b'\x80')

# ---------------------------------------------------------------- cifar
rec = read('data', 'cifar', 'data_batch_1.bin')
put('cifar', 'two-records', b'\x00' + rec)
put('cifar', 'two-files', two(1, rec[:3073], rec[3073:]))
put('cifar', 'bad-label', b'\x00' + read('data', 'cifar-bad', 'badlabel.bin')[:3073 * 2])
put('cifar', 'trunc', b'\x00' + read('data', 'cifar-bad', 'trunc.bin')[:3073 + 100])

# ---------------------------------------------------------------- image
# options byte: bit 0 resize, bit 1 three channels, bits 2-4 h-1, bits 5-7 w-1
def opt(resize, rgb, h, w):
    return bytes([(1 if resize else 0) | (2 if rgb else 0) | (h - 1) << 2 | (w - 1) << 5])

for sub, fn in [('images', 'a_rgb.png'), ('images', 'b_gray.png'), ('images', 'd_solid.jpg'),
                ('images-resize', 'a_grid.png'), ('images-resize', 'b_rgb6.png'),
                ('images-small', 'tiny.png'), ('images-bad', 'broken.png')]:
    b = read('data', sub, fn)
    stem = fn.split('.')[0]
    put('image', stem + '-crop', opt(False, True, 2, 2) + b)
    put('image', stem + '-resize', opt(True, False, 3, 5) + b)
for sub in sorted(os.listdir(os.path.join(FIX, 'data', 'images', 'sub'))):
    put('image', 'sub-' + sub.split('.')[0], opt(True, True, 8, 8) + read('data', 'images', 'sub', sub))

# ---------------------------------------------------------------- ir-parse
graphs = {
    'readme': '''graph mlp                                   # header, exactly once, first
%0 = input "x" : f32[4,3]
%1 = param "fc.weight" init=kaiming_normal a=0 b=0 : f32[5,3]
%2 = state "bn.running_mean" init=zeros a=0 : f32[5]
%3 = const 0.5 : f32[]                      # splat value
%4 = const [1, 2, 3] : f32[3]               # exactly numel values, row-major
%5 = matmul %0, %1 trans_a=0 trans_b=1 label="fc1" : f32[4,5]
%6 = sum %5 axes=[1] keepdims=1 : f32[4,1]
%7 = const 0 : i32[]
%8 = rng_normal %7 seed=42 : f32[4,5]
output y = %6
output "scores (raw)" = %5
''',
    'unary': '''graph "unary \\x41\\t\\"q\\""
%x = input "x" : f32[2,3]
%a = neg %x : f32[2,3]
%b = exp %a : f32[2,3]
%c = log %b : f32[2,3]
%d = sqrt %b : f32[2,3]
%e = rsqrt %b : f32[2,3]
%f = recip %b : f32[2,3]
%g = abs %x : f32[2,3]
%h = sign %x : f32[2,3]
%i = relu %x : f32[2,3]
%j = sigmoid %x : f32[2,3]
%k = tanh %x : f32[2,3]
%l = softplus %x : f32[2,3]
%m = log1p %g : f32[2,3]
%n = stop_gradient %m : f32[2,3]
%o = cast %n : f64[2,3]
%p = cast %o : i32[2,3]
output out = %p
output o2 = %l
''',
    'binary': '''graph bin\r
%x = input "x" : f64[3]\r
%y = input "y" : f64[3]\r
%0 = add %x, %y : f64[3]\r
%1 = sub %0, %y : f64[3]\r
%2 = mul %1, %x : f64[3]\r
%3 = div %2, %y : f64[3]\r
%4 = pow %3, %x : f64[3]\r
%5 = max %4, %x : f64[3]\r
%6 = min %5, %y : f64[3]\r
%7 = lt %6, %x : f64[3]\r
%8 = le %6, %x : f64[3]\r
%9 = eq %7, %8 : f64[3]\r
%10 = ne %7, %8 : f64[3]\r
%11 = ge %9, %10 : f64[3]\r
%12 = gt %9, %10 : f64[3]\r
%13 = select %11, %x, %y : f64[3]\r
output r = %13\r
output s = %12\r
''',
    'layout': '''graph layout
%x = input "x" : f32[2,3,4]
%r = reshape %x : f32[6,4]
%p = permute %x perm=[2,0,1] : f32[4,2,3]
%c = const -inf : f32[]
%b = broadcast %c : f32[2,3,4]
%s = slice %x start=[0,1,0] stop=[2,3,4] step=[1,1,2] : f32[2,2,2]
%q = pad %s lo=[1,0,0] hi=[0,2,1] value=nan : f32[3,4,3]
%k = concat %x, %b, %x axis=1 : f32[2,9,4]
%m = reduce_max %k axes=[0,2] keepdims=0 : f32[9]
%a = argmax %k axis=2 keepdims=1 : i32[2,9,1]
output a = %a
output m = %m
output q = %q
output p = %p
output r = %r
''',
    'conv': '''graph conv
%x = input "x" : f32[2,3,8,8]
%w = param "w" init=normal a=0 b=0.01 : f32[4,3,3,3]
%y = conv2d %x, %w stride=[1,1] padding=[1,1] : f32[2,4,8,8]
%gi = conv2d_grad_input %y, %w stride=[1,1] padding=[1,1] : f32[2,3,8,8]
%gw = conv2d_grad_weight %x, %y stride=[1,1] padding=[1,1] : f32[4,3,3,3]
%m = state "m" init=zeros a=0 : f32[4,3,3,3]
%u = assign %m, %gw : f32[4,3,3,3]
output gi = %gi
output u = %u
''',
    'index': '''graph idx
%l = input "labels" : i32[4]
%o = one_hot %l depth=10 : f32[4,10]
%z = input "z" : f32[4,10]
%g = gather %z, %l axis=1 : f32[4]
%c = const 3 : i32[]
%u = rng_uniform %c seed=18446744073709551615 : f32[4,10]
%e = const [1e-300, -0.0, 2.5e+10, 3] : f64[2,2]
%n = input "u8" : u8[2,2]
%t = matmul %z, %o trans_a=1 trans_b=0 : f32[10,10]
output g = %g
output "u" = %u
output e = %e
output n = %n
output t = %t
''',
    'empty': 'graph empty\n',
    'bad-type': 'graph g\n%0 = input "x" : f32[2,3]\n%1 = relu %0 : f32[3,2]\n',
}
for k, v in graphs.items():
    put('ir-parse', k, v.encode())

# ---------------------------------------------------------------- kcache
# byte 0: fix-up flags (1 key, 2 size, 4 checksum: see fuzz-kcache.c), then
# the entry file: "OCKCACHE", u32 format 1, 4 zero bytes, the 16-byte key,
# u64 payload size, u64 checksum, the payload (all little-endian).
def kc(flags, payload, fmt=1, size=None, magic=b'OCKCACHE'):
    h = magic + struct.pack('<II', fmt, 0) + bytes(16)
    h += struct.pack('<QQ', len(payload) if size is None else size, 0)
    return bytes([flags]) + h + payload

put('kcache', 'valid', kc(7, b'//\n// Generated by NVRTC\n.version 8.0\n.target sm_90\n'))
put('kcache', 'valid-empty', kc(7, b''))
put('kcache', 'valid-binary', kc(7, bytes(range(256))))
put('kcache', 'bad-checksum', kc(3, b'payload'))
put('kcache', 'bad-key', kc(6, b'payload'))
put('kcache', 'bad-size', kc(5, b'payload', size=1 << 63))
put('kcache', 'bad-format', kc(7, b'payload', fmt=2))
put('kcache', 'bad-magic', kc(7, b'payload', magic=b'OCKCACHF'))
put('kcache', 'short', bytes([7]) + b'OCKCACHE\x01')
