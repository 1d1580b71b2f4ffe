/* fuzz_s3xml.c — what an S3 server answers, through the driver's XML reading: a
 * ListObjectsV2 page, an error (s3_judge, for each status that has its own meaning), the
 * <Error> list of DeleteObjects, and the single values the driver picks out. Input: one
 * byte choosing the status, then the body. */
#include "fuzz.h"

#include "../../src/storage/s3/s3_int.h"
#include "pgark/storage_s3.h"

static struct s3 *s3;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fuzz_quiet();
    struct storage_s3_options o = {
        .name = "fuzz",
        .endpoint = "http://127.0.0.1:9",
        .bucket = "bucket",
        .prefix = "pre/fix",
        .access_key_id = "id",
        .secret_access_key = "secret",
    };
    s3 = (struct s3 *)storage_s3_new(&o);
    FUZZ_CHECK(s3 != NULL);
    return 0;
}

static const long statuses[] = {200, 206, 400, 403, 404, 409, 412, 416, 500, 501, 503};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    long status = statuses[fuzz_u8(&in) % (sizeof(statuses) / sizeof(statuses[0]))];
    /* the body exactly as long as it is (not NUL-terminated): an overread is caught */
    uint8_t *copy = malloc(in.n ? in.n : 1);
    if (in.n)
        memcpy(copy, in.p, in.n);
    struct http_response resp = {.status = status, .content_length = -1};
    resp.body.data = copy;
    resp.body.len = resp.body.cap = in.n;
    const char *b = (const char *)copy, *end = b + in.n;

    struct s3_list_entry *page = NULL;
    size_t count = 0, cap = 0;
    if (s3_list_page_parse(s3, &resp, &page, &count, &cap) == 0) {
        for (size_t i = 0; i < count; i++)
            FUZZ_CHECK(strncmp(page[i].key, "pre/fix/", 8) == 0);
    }
    for (size_t i = 0; i < count; i++)
        free(page[i].key);
    free(page);
    err_clear();

    static const char *const tags[] = {
        "IsTruncated", "NextContinuationToken", "UploadId", "ActualObjectSize", "Code", "Message",
        "ETag"};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        free(s3_xml_get(b, end, tags[i]));
    const char *p = b, *c, *cend, *next;
    while ((c = s3_xml_find(p, end, "Error", &cend, &next)) != NULL) {
        FUZZ_CHECK(c <= cend && cend <= end && next <= end && next > p);
        free(s3_xml_get(c, cend, "Key"));
        free(s3_xml_get(c, cend, "Code"));
        p = next;
    }
    char *text = s3_xml_unescape(b, in.n);
    if (text) {
        struct buf again = BUF_INIT;
        buf_append_xml_escaped(&again, text);
        char *back = s3_xml_unescape(again.len ? (const char *)again.data : "", again.len);
        FUZZ_CHECK(back && strcmp(back, text) == 0); /* escaping round-trips */
        free(back);
        buf_free(&again);
    }
    free(text);

    struct s3_req r = {.method = "GET", .key = status & 1 ? "pre/fix/obj" : NULL};
    bool retry = false, slow = false;
    int rc = s3_judge(s3, &r, 0, &resp, &retry, &slow);
    FUZZ_CHECK((rc == 0) == (status >= 200 && status < 300));
    err_clear();

    free(copy);
    return 0;
}
