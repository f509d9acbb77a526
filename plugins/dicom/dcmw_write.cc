// dcmw_write.cc - the DCMTK wrapper's writers: Secondary Capture images, a Comprehensive 3D SR.
//
// Second (and last) C++ file of the plugin, beside dcmw.cc: everything
// DCMTK-specific about writing stays here, behind the C functions of dcmw.h.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dctk.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmsr/dsrdoc.h>
#include <dcmtk/dcmsr/dsrimgvl.h>
#include <dcmtk/dcmsr/dsrnumvl.h>
#include <dcmtk/dcmsr/dsrsc3vl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include <dspipe/common.h>

#include "dcmw.h"

static void say(char *why, size_t n, const char *what, const char *detail)
{
    if (why && n)
        snprintf(why, n, "%s: %s", what, detail);
}

static const char *orempty(const char *s)
{
    return s ? s : "";
}

extern "C" void dcmw_new_uid(const char *root, char *buf)
{
    dcmGenerateUniqueIdentifier(buf, root && *root ? root : SITE_INSTANCE_UID_ROOT);
}

// Serialise as Part 10 into a small buffer, handing each full buffer to
// stdio: DCMTK only writes files by name, and dspipe's atomic outputs are
// streams.
static int write_part10(DcmFileFormat &ff, FILE *fp, char *why, size_t n)
{
    const E_TransferSyntax xfer = EXS_LittleEndianExplicit;
    OFCondition st = ff.validateMetaInfo(xfer);
    if (st.bad()) {
        say(why, n, "cannot build the meta header", st.text());
        return DSP_EFORMAT;
    }
    static const size_t chunk = 64 * 1024;
    std::string buf(chunk, '\0');
    DcmOutputBufferStream out(&buf[0], chunk);
    void *data = NULL;
    offile_off_t len = 0;
    ff.transferInit();
    st = ff.write(out, xfer, EET_ExplicitLength, NULL);
    while (st == EC_StreamNotifyClient) {
        out.flushBuffer(data, len);
        if (len && fwrite(data, 1, (size_t)len, fp) != (size_t)len)
            break;
        st = ff.write(out, xfer, EET_ExplicitLength, NULL);
    }
    ff.transferEnd();
    if (st.bad() && st != EC_StreamNotifyClient) {
        say(why, n, "DCMTK cannot encode the dataset", st.text());
        return DSP_EFORMAT;
    }
    out.flush();
    out.flushBuffer(data, len);
    if (st == EC_StreamNotifyClient || (len && fwrite(data, 1, (size_t)len, fp) != (size_t)len)) {
        say(why, n, "write error", strerror(errno));
        return DSP_EIO;
    }
    return 0;
}

static void put(DcmItem *ds, const DcmTagKey &tag, const char *v, OFCondition &st)
{
    if (st.good())
        st = ds->putAndInsertString(tag, orempty(v));
}

static void put_patient_study(DcmItem *ds, const dcmw_patient *p, OFCondition &st)
{
    put(ds, DCM_PatientName, p->name, st);
    put(ds, DCM_PatientID, p->id, st);
    put(ds, DCM_PatientBirthDate, p->birth_date, st);
    put(ds, DCM_PatientSex, p->sex, st);
    if (p->age && *p->age)
        put(ds, DCM_PatientAge, p->age, st);
    put(ds, DCM_StudyDate, p->study_date, st);
    put(ds, DCM_StudyTime, p->study_time, st);
    put(ds, DCM_StudyID, p->study_id, st);
    put(ds, DCM_AccessionNumber, p->accession, st);
    put(ds, DCM_ReferringPhysicianName, p->referring, st);
}

// Today's date and time as DICOM DA / TM, for ContentDate/Time.
static void now(OFString &date, OFString &time)
{
    DcmDate::getCurrentDate(date);
    DcmTime::getCurrentTime(time);
}

extern "C" int dcmw_write_sc(void *fp, const dcmw_sc *sc, char *why, size_t n)
{
    int err = dcmw_init(why, n);
    if (err < 0)
        return err;
    try {
        DcmFileFormat ff;
        DcmDataset *ds = ff.getDataset();
        OFCondition st;
        OFString date, time;
        now(date, time);
        char num[32];
        put(ds, DCM_SpecificCharacterSet, "ISO_IR 100", st);
        put(ds, DCM_SOPClassUID, UID_SecondaryCaptureImageStorage, st);
        put(ds, DCM_SOPInstanceUID, sc->sop_uid, st);
        put(ds, DCM_StudyInstanceUID, sc->study_uid, st);
        put(ds, DCM_SeriesInstanceUID, sc->series_uid, st);
        put_patient_study(ds, sc->patient, st);
        // Secondary Capture: the modality of what was captured is unknown to the IOD
        put(ds, DCM_Modality, "OT", st);
        snprintf(num, sizeof num, "%d", sc->series_number);
        put(ds, DCM_SeriesNumber, num, st);
        put(ds, DCM_SeriesDescription, sc->series_description, st);
        // both lungs are shown: ImageLaterality B, which makes the series'
        // Laterality (type 2C, for paired body parts) unnecessary
        put(ds, DCM_ImageLaterality, "B", st);
        snprintf(num, sizeof num, "%d", sc->instance_number);
        put(ds, DCM_InstanceNumber, num, st);
        put(ds, DCM_PatientOrientation, "", st);
        put(ds, DCM_ContentDate, date.c_str(), st);
        put(ds, DCM_ContentTime, time.c_str(), st);
        put(ds, DCM_InstanceCreationDate, date.c_str(), st);
        put(ds, DCM_InstanceCreationTime, time.c_str(), st);
        put(ds, DCM_Manufacturer, "dspipe", st);
        put(ds, DCM_ConversionType, "WSD", st);    // workstation: rendered, not scanned
        put(ds, DCM_ImageType, "DERIVED\\SECONDARY", st);
        put(ds, DCM_DerivationDescription, sc->derivation, st);
        if (sc->comments && *sc->comments)
            put(ds, DCM_ImageComments, sc->comments, st);
        // the overlay marks a finding, it names nobody
        put(ds, DCM_BurnedInAnnotation, "NO", st);
        put(ds, DCM_LossyImageCompression, "00", st);
        put(ds, DCM_PhotometricInterpretation, "RGB", st);
        if (st.good()) st = ds->putAndInsertUint16(DCM_SamplesPerPixel, 3);
        if (st.good()) st = ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
        if (st.good()) st = ds->putAndInsertUint16(DCM_Rows, (Uint16)sc->rows);
        if (st.good()) st = ds->putAndInsertUint16(DCM_Columns, (Uint16)sc->cols);
        if (st.good()) st = ds->putAndInsertUint16(DCM_BitsAllocated, 8);
        if (st.good()) st = ds->putAndInsertUint16(DCM_BitsStored, 8);
        if (st.good()) st = ds->putAndInsertUint16(DCM_HighBit, 7);
        if (st.good()) st = ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
        if (st.good())
            st = ds->putAndInsertUint8Array(DCM_PixelData, sc->rgb,
                                            (unsigned long)sc->rows * sc->cols * 3);
        if (st.bad()) {
            say(why, n, "cannot build the Secondary Capture dataset", st.text());
            return DSP_EFORMAT;
        }
        return write_part10(ff, static_cast<FILE *>(fp), why, n);
    } catch (const std::bad_alloc &) {
        return DSP_ENOMEM;
    }
}

/* ---- the structured report -------------------------------------------------- */

// Concepts without a standard code that fits: a private coding scheme,
// declared in CodingSchemeIdentificationSequence as PS3.3 asks.
static const char *const PRIVATE_SCHEME = "99DSPIPE";

static DSRCodedEntryValue code(const char *value, const char *scheme, const char *meaning)
{
    return DSRCodedEntryValue(value, scheme, meaning);
}

static std::string fmt(double v, const char *f)
{
    char b[64];
    snprintf(b, sizeof b, f, v);
    return b;
}

// Each add_* puts one item after the cursor (or below it for the first
// child) and leaves the cursor on the new item; the caller goes up after
// the last child. `below` says which.
struct sr_builder {
    DSRDocumentTree &t;
    OFCondition st;
    bool below;

    bool add(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType vt,
             const DSRCodedEntryValue &name)
    {
        if (st.bad())
            return false;
        st = below ? t.addChildContentItem(rel, vt, name) : t.addContentItem(rel, vt, name);
        below = false;
        return st.good();
    }
    void text(const DSRCodedEntryValue &name, const std::string &v)
    {
        if (add(DSRTypes::RT_contains, DSRTypes::VT_Text, name))
            st = t.getCurrentContentItem().setStringValue(v.c_str());
    }
    void codev(const DSRCodedEntryValue &name, const DSRCodedEntryValue &v)
    {
        if (add(DSRTypes::RT_contains, DSRTypes::VT_Code, name))
            st = t.getCurrentContentItem().setCodeValue(v);
    }
    void num(const DSRCodedEntryValue &name, const std::string &v, const DSRCodedEntryValue &unit)
    {
        if (add(DSRTypes::RT_contains, DSRTypes::VT_Num, name))
            st = t.getCurrentContentItem().setNumericValue(DSRNumericMeasurementValue(v.c_str(),
                                                                                      unit));
    }
    void point(const DSRCodedEntryValue &name, const double c[3], const char *for_uid)
    {
        if (!add(DSRTypes::RT_contains, DSRTypes::VT_SCoord3D, name))
            return;
        DSRSpatialCoordinates3DValue v(DSRTypes::GT3_Point);
        v.getGraphicDataList().addItem((Float32)c[0], (Float32)c[1], (Float32)c[2]);
        st = v.setFrameOfReferenceUID(for_uid);
        if (st.good())
            st = t.getCurrentContentItem().setSpatialCoordinates3D(v);
    }
    void image(const DSRCodedEntryValue &name, const char *cls, const char *uid)
    {
        if (add(DSRTypes::RT_contains, DSRTypes::VT_Image, name))
            st = t.getCurrentContentItem().setImageReference(DSRImageReferenceValue(cls, uid));
    }
};

static void add_finding(sr_builder &b, const dcmw_sr *sr, int i)
{
    const dcmw_finding *f = &sr->f[i];
    const DSRCodedEntryValue mm = code("mm", "UCUM", "millimeter");
    b.add(DSRTypes::RT_contains, DSRTypes::VT_Container,
          code("125007", "DCM", "Measurement Group"));
    b.below = true;
    b.text(code("112039", "DCM", "Tracking Identifier"), "Finding " + std::to_string(i + 1));
    b.codev(code("121071", "DCM", "Finding"), code("786838002", "SCT", "Pulmonary nodule"));
    b.codev(code("363698007", "SCT", "Finding Site"), code("39607008", "SCT", "Lung"));
    if (sr->for_uid && *sr->for_uid)
        b.point(code("111010", "DCM", "Center"), f->center_mm, sr->for_uid);
    else
        b.text(code("111010", "DCM", "Center"),
               fmt(f->center_mm[0], "(%.2f, ") + fmt(f->center_mm[1], "%.2f, ") +
               fmt(f->center_mm[2], "%.2f) mm, patient LPS"));
    b.num(code("81827009", "SCT", "Diameter"), fmt(f->diameter_mm, "%.2f"), mm);
    b.num(code("118565006", "SCT", "Volume"), fmt(f->volume_mm3, "%.1f"),
          code("mm3", "UCUM", "cubic millimeter"));
    b.num(code("112031", "DCM", "Attenuation Coefficient"), fmt(f->mean_hu, "%.1f"),
          code("[hnsf'U]", "UCUM", "Hounsfield unit"));
    b.text(code("DSP001", PRIVATE_SCHEME, "Nodule composition"), orempty(f->type));
    b.text(code("DSP002", PRIVATE_SCHEME, "Lung-RADS category"), orempty(f->lung_rads));
    b.num(code("DSP003", PRIVATE_SCHEME, "Detection confidence"), fmt(f->confidence, "%.3f"),
          code("1", "UCUM", "no units"));
    if (f->key_image_uid && *f->key_image_uid)
        b.image(code("121080", "DCM", "Best illustration of finding"),
                UID_SecondaryCaptureImageStorage, f->key_image_uid);
    if (b.st.good())
        b.t.goUp();
}

static OFCondition add_evidence(DSRDocument &doc, const dcmw_sr *sr)
{
    OFCondition st;
    for (int i = 0; st.good() && i < sr->n_source; i++)
        st = doc.getCurrentRequestedProcedureEvidence().addItem(
            sr->study_uid, sr->source_series_uid, sr->source_sop_class, sr->source_sops[i]);
    for (int i = 0; st.good() && sr->sc_series_uid && i < sr->nf; i++)
        if (sr->f[i].key_image_uid && *sr->f[i].key_image_uid)
            st = doc.getPertinentOtherEvidence().addItem(sr->study_uid, sr->sc_series_uid,
                                                         UID_SecondaryCaptureImageStorage,
                                                         sr->f[i].key_image_uid);
    return st;
}

static OFCondition set_patient(DSRDocument &doc, const dcmw_patient *p)
{
    OFCondition st;
    if (p->name && *p->name) st = doc.setPatientName(p->name);
    if (st.good() && p->id && *p->id) st = doc.setPatientID(p->id);
    if (st.good() && p->birth_date && *p->birth_date) st = doc.setPatientBirthDate(p->birth_date);
    if (st.good() && p->sex && *p->sex) st = doc.setPatientSex(p->sex);
    if (st.good() && p->study_date && *p->study_date) st = doc.setStudyDate(p->study_date);
    if (st.good() && p->study_time && *p->study_time) st = doc.setStudyTime(p->study_time);
    if (st.good() && p->study_id && *p->study_id) st = doc.setStudyID(p->study_id);
    if (st.good() && p->accession && *p->accession) st = doc.setAccessionNumber(p->accession);
    if (st.good() && p->referring && *p->referring)
        st = doc.setReferringPhysicianName(p->referring);
    return st;
}

static int build_sr(DSRDocument &doc, const dcmw_sr *sr, char *why, size_t n)
{
    OFCondition st = doc.createNewSeriesInStudy(sr->study_uid);
    if (st.good()) st = doc.setSeriesDescription("Lung nodule findings (dspipe)");
    if (st.good()) st = doc.setSeriesNumber(std::to_string(sr->series_number).c_str());
    if (st.good()) st = doc.setManufacturer("dspipe");
    if (st.good()) st = set_patient(doc, sr->patient);
    if (st.good())
        st = doc.getCodingSchemeIdentification().addItem(PRIVATE_SCHEME);
    if (st.good())
        st = doc.getCodingSchemeIdentification().setCodingSchemeName(
            "dspipe lung nodule screening concepts");
    if (st.bad()) {
        say(why, n, "cannot set the SR's header", st.text());
        return DSP_EFORMAT;
    }
    sr_builder b = { doc.getTree(), EC_Normal, false };
    if (!b.t.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container)) {
        say(why, n, "DCMTK refuses the SR's root container", "");
        return DSP_EFORMAT;
    }
    b.st = b.t.getCurrentContentItem().setConceptName(
        code("DSP000", PRIVATE_SCHEME, "Lung nodule findings"));
    b.below = true;
    b.text(code("121106", "DCM", "Comment"),
           std::to_string(sr->nf) + (sr->nf == 1 ? " finding" : " findings") +
           " by the " + orempty(sr->detector) + " detector of dspipe (computer-aided "
           "detection, not a diagnosis)");
    for (int i = 0; b.st.good() && i < sr->nf; i++)
        add_finding(b, sr, i);
    if (b.st.bad()) {
        say(why, n, "DCMTK refuses a content item", b.st.text());
        return DSP_EFORMAT;
    }
    if ((st = add_evidence(doc, sr)).bad()) {
        say(why, n, "cannot reference the source instances", st.text());
        return DSP_EFORMAT;
    }
    return 0;
}

extern "C" int dcmw_write_sr(void *fp, const dcmw_sr *sr, char *why, size_t n)
{
    int err = dcmw_init(why, n);
    if (err < 0)
        return err;
    try {
        DSRDocument doc(DSRTypes::DT_Comprehensive3DSR);
        if ((err = build_sr(doc, sr, why, n)) < 0)
            return err;
        if (!doc.isValid()) {
            say(why, n, "DCMTK's SR checks refuse the document", "invalid content tree");
            return DSP_EFORMAT;
        }
        DcmFileFormat ff;
        DcmDataset *ds = ff.getDataset();
        OFCondition st = doc.write(*ds);
        // DCMTK generated the UIDs under its own root: use the caller's
        if (st.good() && sr->series_uid && *sr->series_uid)
            st = ds->putAndInsertString(DCM_SeriesInstanceUID, sr->series_uid);
        if (st.good() && sr->sop_uid && *sr->sop_uid)
            st = ds->putAndInsertString(DCM_SOPInstanceUID, sr->sop_uid);
        if (st.bad()) {
            say(why, n, "DCMTK cannot write the SR", st.text());
            return DSP_EFORMAT;
        }
        return write_part10(ff, static_cast<FILE *>(fp), why, n);
    } catch (const std::bad_alloc &) {
        return DSP_ENOMEM;
    }
}
