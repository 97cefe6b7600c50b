/* fuzz-image.c - fuzz target for the image-folder loader's decode path
 * (ood/data-image.c: stb_image PNG/JPEG decoding, channel conversion, crop
 * and area resample), through oc_data_load_folder on a folder holding one
 * file.
 *
 * Input: byte 0 picks the options (bit 0: resize, else crop; bit 1: 3
 * channels, else 1; bits 2-4: h - 1; bits 5-7: w - 1), the rest is the image
 * file. An accepted image must come out as 1 x c x h x w values in [0, 1]
 * (up to rounding). A file that does not decode, or is smaller than the
 * crop, must be an error naming the file. */
#include "fuzz-common.h"

#include "../../ood/data.h"

OC_FUZZ_ENTRY(image)
{
    if (size < 1) return 0;
    const char *dir = oc_fuzz_dir();
    char path[300];
    snprintf(path, sizeof path, "%s/img.png", dir);
    oc_fuzz_write(path, data + 1, size - 1);

    int opt = data[0];
    enum oc_folder_mode mode = opt & 1 ? OC_FOLDER_RESIZE : OC_FOLDER_CROP;
    int c = opt & 2 ? 3 : 1, h = ((opt >> 2) & 7) + 1, w = ((opt >> 5) & 7) + 1;
    struct oc_dataset ds;
    memset(&ds, 0x5a, sizeof ds); /* the loader must not touch *out on failure */
    struct oc_dataset untouched = ds;
    struct oc_err err = {0};
    enum oc_status s = oc_data_load_folder(dir, mode, c, h, w, 0, 7, &ds, &err);
    if (s != OC_OK) {
        OC_FUZZ_CHECK(err.code == s && strstr(err.msg, "img.png"),
                      "status %d: error does not name the file: %s", (int)s, err.msg);
        OC_FUZZ_CHECK(!memcmp(&ds, &untouched, sizeof ds), "failed load modified *out");
        return 0;
    }
    OC_FUZZ_CHECK(ds.n == 1 && ds.c == c && ds.h == h && ds.w == w && ds.images && !ds.labels,
                  "bad dataset %lldx%dx%dx%d", (long long)ds.n, ds.c, ds.h, ds.w);
    for (int64_t i = 0; i < (int64_t)c * h * w; i++)
        /* area averaging may round a hair past 1 */
        OC_FUZZ_CHECK(ds.images[i] >= 0.0f && ds.images[i] <= 1.0f + 1e-5f, "pixel %lld is %g",
                      (long long)i, (double)ds.images[i]);
    oc_dataset_free(&ds);
    return 0;
}
