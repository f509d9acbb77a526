// dcmw.cc - the DCMTK wrapper: load a file, read attributes, decode frames, hand out encapsulated fragments.
//
// The only C++ in the plugin. Everything DCMTK-specific stays here, behind
// the C functions of dcmw.h, so the rest of the plugin is plain C11.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcistrmf.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include <dspipe/common.h>

#include "dcmw.h"

struct dcmw_file {
    DcmFileFormat ff;
    std::string xfer_uid;
    E_TransferSyntax xfer;
    uint64_t parsed;            // bytes of the file parsed (header-only opens)
};

static void set_why(char *why, size_t n, const char *fmt, const char *a, const char *b = "")
{
    if (why && n)
        snprintf(why, n, fmt, a, b);
}

static std::once_flag init_once;
static bool dict_ok;
static bool registered;

// DCMTK keeps its codec list until told otherwise: deregister when the
// plugin is unloaded (dlclose or exit), so no registration outlives it.
namespace {
struct codec_cleanup {
    ~codec_cleanup()
    {
        if (!registered)
            return;
        DcmRLEDecoderRegistration::cleanup();
        DJLSDecoderRegistration::cleanup();
        DJDecoderRegistration::cleanup();
    }
} cleanup_at_unload;
}

static void init_dcmtk()
{
    // DCMTK logs to stderr by default; dspipe reports errors itself
    OFLog::configure(OFLogger::OFF_LOG_LEVEL);
    // Convert YCbCr JPEG to RGB (as every viewer and pydicom do), keep the
    // rest as stored
    DJDecoderRegistration::registerCodecs(EDC_photometricInterpretation, EUC_default,
                                          EPC_colorByPixel);
    DJLSDecoderRegistration::registerCodecs(EJLSUC_default, EJLSPC_colorByPixel);
    DcmRLEDecoderRegistration::registerCodecs();
    registered = true;
    dict_ok = dcmDataDict.isDictionaryLoaded();
}

extern "C" int dcmw_init(char *why, size_t n)
{
    std::call_once(init_once, init_dcmtk);
    if (!dict_ok) {
        const char *env = getenv(DCM_DICT_ENVIRONMENT_VARIABLE);
        set_why(why, n, "DCMTK's data dictionary is not loaded (looked in %s); install "
                "libdcmtk17, or point DCMDICTPATH at its dicom.dic%s",
                env && *env ? env : DCM_DICT_DEFAULT_PATH);
        return DSP_EUNSUPPORTED;
    }
    return 0;
}

// Load path; parsing stops before stop (DCM_UndefinedTagKey: the whole file).
// As DcmFileFormat::loadFileUntilTag, but through our own stream so that
// we learn where parsing stopped.
static int open_until(const char *path, const DcmTagKey &stop, dcmw_file **out, char *why,
                      size_t n)
{
    *out = NULL;
    int err = dcmw_init(why, n);
    if (err < 0)
        return err;
    dcmw_file *f = new (std::nothrow) dcmw_file;
    if (!f)
        return DSP_ENOMEM;
    DcmInputFileStream in(path);
    OFCondition st = in.status();
    if (st.good()) {
        f->ff.transferInit();
        st = f->ff.readUntilTag(in, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, stop);
        f->ff.transferEnd();
    }
    if (st.bad()) {
        set_why(why, n, "DCMTK cannot parse it: %s%s", st.text());
        delete f;
        return DSP_EFORMAT;
    }
    f->parsed = (uint64_t)in.tell();
    f->xfer = f->ff.getDataset()->getOriginalXfer();
    DcmXfer x(f->xfer);
    f->xfer_uid = f->xfer == EXS_Unknown ? "" : x.getXferID();
    *out = f;
    return 0;
}

extern "C" int dcmw_open(const char *path, dcmw_file **out, char *why, size_t n)
{
    return open_until(path, DCM_UndefinedTagKey, out, why, n);
}

extern "C" int dcmw_open_header(const char *path, dcmw_file **out, char *why, size_t n)
{
    return open_until(path, DCM_PixelData, out, why, n);
}

extern "C" uint64_t dcmw_parsed_bytes(const dcmw_file *f)
{
    return f->parsed;
}

extern "C" void dcmw_close(dcmw_file *f)
{
    delete f;
}

extern "C" const char *dcmw_transfer_syntax(const dcmw_file *f)
{
    return f->xfer_uid.c_str();
}

extern "C" int dcmw_is_dicomdir(const dcmw_file *f)
{
    dcmw_file *m = const_cast<dcmw_file *>(f);
    OFString cls;
    if (m->ff.getMetaInfo()->findAndGetOFString(DCM_MediaStorageSOPClassUID, cls).good() &&
        cls == UID_MediaStorageDirectoryStorage)
        return 1;
    return m->ff.getDataset()->tagExists(DCM_DirectoryRecordSequence) ? 1 : 0;
}

static DcmItem *item_for(const dcmw_file *f, uint32_t tag)
{
    dcmw_file *m = const_cast<dcmw_file *>(f);
    if ((tag >> 16) == 0x0002)
        return m->ff.getMetaInfo();
    return m->ff.getDataset();
}

extern "C" int dcmw_get_str(const dcmw_file *f, uint32_t tag, char *buf, size_t n)
{
    OFString s;
    DcmTagKey key((Uint16)(tag >> 16), (Uint16)(tag & 0xFFFF));
    if (n)
        buf[0] = '\0';
    if (item_for(f, tag)->findAndGetOFStringArray(key, s).bad() || s.empty())
        return DSP_ENOENT;
    if (n) {
        size_t len = s.length() < n - 1 ? s.length() : n - 1;
        memcpy(buf, s.c_str(), len);
        buf[len] = '\0';
    }
    return 0;
}

extern "C" int dcmw_get_int(const dcmw_file *f, uint32_t tag, unsigned long pos, long *v)
{
    DcmTagKey key((Uint16)(tag >> 16), (Uint16)(tag & 0xFFFF));
    DcmItem *it = item_for(f, tag);
    long l = 0;
    if (it->findAndGetLongInt(key, l, pos).good()) {
        *v = l;
        return 0;
    }
    // IS is text: findAndGetLongInt refuses it, findAndGetSint32 reads it
    Sint32 s = 0;
    if (it->findAndGetSint32(key, s, pos).good()) {
        *v = s;
        return 0;
    }
    return DSP_ENOENT;
}

extern "C" int dcmw_get_float(const dcmw_file *f, uint32_t tag, unsigned long pos, double *v)
{
    DcmTagKey key((Uint16)(tag >> 16), (Uint16)(tag & 0xFFFF));
    Float64 d = 0;
    if (item_for(f, tag)->findAndGetFloat64(key, d, pos).bad())
        return DSP_ENOENT;
    *v = d;
    return 0;
}

extern "C" int dcmw_get_frame_float(const dcmw_file *f, int frame, uint32_t tag,
                                    unsigned long pos, double *v)
{
    DcmTagKey key((Uint16)(tag >> 16), (Uint16)(tag & 0xFFFF));
    DcmDataset *ds = const_cast<dcmw_file *>(f)->ff.getDataset();
    DcmItem *it = NULL;
    Float64 d = 0;
    if (frame >= 0 &&
        ds->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, it, frame).good() &&
        it && it->findAndGetFloat64(key, d, pos, OFTrue).good()) {
        *v = d;
        return 0;
    }
    it = NULL;
    if (ds->findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, it, 0).good() && it &&
        it->findAndGetFloat64(key, d, pos, OFTrue).good()) {
        *v = d;
        return 0;
    }
    return DSP_ENOENT;
}

static DcmPixelData *pixel_data(const dcmw_file *f)
{
    DcmElement *el = NULL;
    DcmDataset *ds = const_cast<dcmw_file *>(f)->ff.getDataset();
    if (ds->findAndGetElement(DCM_PixelData, el).bad() || !el || el->ident() != EVR_PixelData)
        return NULL;
    return OFstatic_cast(DcmPixelData *, el);
}

extern "C" int dcmw_pixel_info(const dcmw_file *f, int *present, int *encapsulated,
                               uint64_t *length)
{
    DcmPixelData *pd = pixel_data(f);
    *present = pd != NULL;
    *encapsulated = 0;
    *length = 0;
    if (!pd)
        return 0;
    *encapsulated = DcmXfer(f->xfer).isEncapsulated() ? 1 : 0;
    if (!*encapsulated)
        *length = pd->getLength();
    return 0;
}

extern "C" int dcmw_decode_frame(dcmw_file *f, int frame, void *buf, size_t size, char *color,
                                 size_t color_n, int *planar, char *why, size_t n)
{
    DcmPixelData *pd = pixel_data(f);
    DcmDataset *ds = f->ff.getDataset();
    if (!pd) {
        set_why(why, n, "no pixel data%s%s", "");
        return DSP_EFORMAT;
    }
    Uint32 need = 0;
    if (pd->getUncompressedFrameSize(ds, need).bad() || need > size) {
        set_why(why, n, "DCMTK computes a frame size that does not match the image "
                "attributes%s%s", "");
        return DSP_EFORMAT;
    }
    if (size > 0xFFFFFFFFu) {
        set_why(why, n, "frame larger than 4 GiB%s%s", "");
        return DSP_ELIMIT;
    }
    Uint32 start = 0;
    OFString cm;
    OFCondition st = pd->getUncompressedFrame(ds, (Uint32)frame, start, buf, (Uint32)size, cm);
    if (st.bad()) {
        set_why(why, n, "cannot decode frame: %s%s", st.text());
        return st == EC_CannotChangeRepresentation || st == EC_UnsupportedEncoding
                   ? DSP_EUNSUPPORTED : DSP_EFORMAT;
    }
    if (color && color_n)
        snprintf(color, color_n, "%s", cm.c_str());
    Uint16 pc = 0;
    // the decoders (RLE) update PlanarConfiguration to describe their output
    *planar = ds->findAndGetUint16(DCM_PlanarConfiguration, pc).good() && pc == 1;
    return 0;
}

extern "C" int dcmw_read_native(dcmw_file *f, uint64_t offset, void *buf, size_t size,
                                char *why, size_t n)
{
    DcmPixelData *pd = pixel_data(f);
    if (!pd) {
        set_why(why, n, "no pixel data%s%s", "");
        return DSP_EFORMAT;
    }
    if (offset + size > pd->getLength() || offset + size > 0xFFFFFFFFu) {
        set_why(why, n, "pixel data too short for frame%s%s", "");
        return DSP_EFORMAT;
    }
    // host byte order whatever the transfer syntax (OW is swapped in 16-bit words)
    OFCondition st = pd->getPartialValue(buf, (Uint32)offset, (Uint32)size, NULL,
                                         gLocalByteOrder);
    if (st.bad()) {
        set_why(why, n, "cannot read the pixel data: %s%s", st.text());
        return DSP_EFORMAT;
    }
    return 0;
}

static int append(std::string &s, DcmPixelItem *it)
{
    Uint8 *p = NULL;
    Uint32 len = it->getLength();
    if (len == 0)
        return 0;
    if (it->getUint8Array(p).bad() || !p)
        return DSP_EFORMAT;
    s.append(reinterpret_cast<const char *>(p), len);
    return 0;
}

extern "C" int dcmw_frame_bytes(dcmw_file *f, int frame, int n_frames, unsigned char **data,
                                size_t *size, char *why, size_t n)
{
    *data = NULL;
    *size = 0;
    DcmPixelData *pd = pixel_data(f);
    DcmPixelSequence *seq = NULL;
    if (!pd || pd->getEncapsulatedRepresentation(f->xfer, NULL, seq).bad() || !seq) {
        set_why(why, n, "no encapsulated pixel data%s%s", "");
        return DSP_EFORMAT;
    }
    unsigned long items = seq->card();
    if (items < 2) {
        set_why(why, n, "encapsulated pixel data without fragments%s%s", "");
        return DSP_EFORMAT;
    }
    unsigned long frags = items - 1;    // item 0 is the basic offset table
    std::string out;
    int err = 0;
    try {
        if ((long)frags == n_frames || n_frames == 1) {
            unsigned long first = (long)frags == n_frames ? (unsigned long)frame + 1 : 1;
            unsigned long last = (long)frags == n_frames ? first : frags;
            for (unsigned long i = first; !err && i <= last; i++) {
                DcmPixelItem *it = NULL;
                err = seq->getItem(it, i).good() && it ? append(out, it) : DSP_EFORMAT;
            }
        } else {
            // several fragments per frame: a JPEG 2000 codestream starts with SOC SIZ;
            // other codecs would need the offset table, refused below
            int cur = -1;
            for (unsigned long i = 1; !err && i <= frags && cur <= frame; i++) {
                DcmPixelItem *it = NULL;
                Uint8 *p = NULL;
                if (seq->getItem(it, i).bad() || !it) {
                    err = DSP_EFORMAT;
                    break;
                }
                if (it->getLength() >= 4 && it->getUint8Array(p).good() && p && p[0] == 0xFF &&
                    p[1] == 0x4F && p[2] == 0xFF && p[3] == 0x51)
                    cur++;
                if (cur == frame)
                    err = append(out, it);
            }
        }
    } catch (const std::bad_alloc &) {
        err = DSP_ENOMEM;
    }
    if (err < 0 || out.empty()) {
        set_why(why, n, "cannot find the fragments of frame %s%s",
                std::to_string(frame + 1).c_str());
        return err < 0 ? err : DSP_EFORMAT;
    }
    *data = static_cast<unsigned char *>(malloc(out.size()));
    if (!*data)
        return DSP_ENOMEM;
    memcpy(*data, out.data(), out.size());
    *size = out.size();
    return 0;
}
