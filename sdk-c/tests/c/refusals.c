/*
 * The C ABI against a real coordinator (its URL in argv[1]), for what a caller reads back when
 * things do not go to plan:
 *
 *  - lh_client_wait past its deadline: LH_TIMEOUT, the last error naming the job's state;
 *  - lh_job_put_artifact_path on a missing file: LH_IO, the last error naming the path;
 *  - a result over the coordinator's 1 MiB limit: lh_job_outcome says
 *    LH_ACK_RECORDED_AS_FAILURE with state "dead", and the job is dead on attempt 1 with class
 *    result_too_large (not left to expire and run again).
 *
 * Run by scripts/test (gcc, then valgrind). Prints "refusals: 4 passed, 0 failed" on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leasehold.h"

#define QUEUE "c-refusals"

static int failures = 0;
static int passed = 0;

static void last_error(char *buf, size_t len) { lh_last_error(buf, len); }

static void check(int ok, const char *what, const char *detail) {
    if (ok) {
        passed++;
    } else {
        failures++;
        fprintf(stderr, "FAILED: %s: %s\n", what, detail);
    }
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        lh_result rc_ = (call);                                                                    \
        if (rc_ != LH_OK) {                                                                        \
            char msg_[1024];                                                                       \
            last_error(msg_, sizeof msg_);                                                         \
            fprintf(stderr, "%s failed: %s: %s\n", #call, lh_result_name(rc_), msg_);              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Enqueues a job of `kind` and copies its id (36 characters and a NUL) into `id`. */
static void enqueue(lh_client *client, const char *kind, char id[37]) {
    char job_json[256];
    int len = snprintf(job_json, sizeof job_json,
                       "{\"queue\":\"" QUEUE "\",\"kind\":\"%s\",\"payload\":{},\"max_attempts\":5}", kind);
    lh_bytes answer = {0};
    TRY(lh_client_enqueue(client, job_json, (size_t)len, NULL, &answer));
    const char *at = strstr((const char *)answer.data, "\"id\":\"");
    if (at == NULL) {
        fprintf(stderr, "no id in %s\n", (const char *)answer.data);
        exit(1);
    }
    memcpy(id, at + 6, 36);
    id[36] = '\0';
    lh_bytes_free(&answer);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL\n", argv[0]);
        return 2;
    }
    char config[512];
    int len = snprintf(config, sizeof config, "{\"url\":\"%s\"}", argv[1]);
    lh_client *client = NULL;
    TRY(lh_client_new(config, (size_t)len, &client));
    char msg[2048];

    /* 1. Waiting for a job nobody works: LH_TIMEOUT naming its state. */
    char waited[37];
    enqueue(client, "nobody", waited);
    lh_bytes answer = {0};
    lh_result rc = lh_client_wait(client, waited, 36, 200, NULL, &answer);
    last_error(msg, sizeof msg);
    char want[128];
    snprintf(want, sizeof want, "job %s still queued after 200ms (attempt 0 of 5)", waited);
    check(rc == LH_TIMEOUT && strcmp(msg, want) == 0 && answer.data == NULL, "wait timeout", msg);

    /* The worker takes that job and the next one. */
    char big[37];
    enqueue(client, "big", big);
    len = snprintf(config, sizeof config,
                   "{\"url\":\"%s\",\"queues\":[\"" QUEUE "\"],\"lease_ttl_ms\":10000}", argv[1]);
    lh_worker *worker = NULL;
    TRY(lh_worker_new(config, (size_t)len, &worker));
    for (int taken = 0; taken < 2; taken++) {
        lh_job *job = NULL;
        TRY(lh_worker_next(worker, 30000, &job));
        lh_job_info info;
        TRY(lh_job_get_info(job, &info));
        if (strcmp(info.kind.data, "nobody") == 0) {
            /* 2. An artifact from a missing file: LH_IO naming the path. */
            const char path[] = "/nonexistent-leasehold-dir/missing.bin";
            lh_bytes artifact = {0};
            rc = lh_job_put_artifact_path(job, "out.bin", 7, NULL, 0, path, sizeof path - 1, NULL,
                                          &artifact);
            last_error(msg, sizeof msg);
            check(rc == LH_IO && strstr(msg, path) != NULL && artifact.data == NULL,
                  "missing artifact file", msg);
            const char why[] = "done with it";
            TRY(lh_job_fail(job, NULL, 0, why, sizeof why - 1, false, -1));
        } else {
            /* 3. A result over the 1 MiB limit: recorded as a final failure instead. */
            size_t n = 1100000;
            char *result = malloc(n + 16);
            if (result == NULL) return 1;
            memcpy(result, "{\"blob\":\"", 9);
            memset(result + 9, 'x', n);
            memcpy(result + 9 + n, "\"}", 2);
            TRY(lh_job_complete(job, result, n + 11));
            free(result);
            lh_outcome outcome;
            TRY(lh_job_outcome(job, 30000, &outcome));
            snprintf(msg, sizeof msg, "ack %d, state %s", (int)outcome.ack,
                     outcome.state.data ? outcome.state.data : "(none)");
            check(outcome.ack == LH_ACK_RECORDED_AS_FAILURE && outcome.state.data != NULL &&
                      strcmp(outcome.state.data, "dead") == 0,
                  "refused result", msg);
        }
        lh_job_free(job);
    }
    answer = (lh_bytes){0};
    TRY(lh_client_get(client, big, 36, NULL, &answer));
    const char *body = (const char *)answer.data;
    int ok = strstr(body, "\"state\":\"dead\"") && strstr(body, "\"attempt\":1,") &&
             strstr(body, "\"class\":\"result_too_large\"");
    check(ok, "refused result recorded", body);
    lh_bytes_free(&answer);

    size_t released = 0;
    TRY(lh_worker_shutdown(worker, 5000, &released));
    lh_worker_free(worker);
    lh_client_free(client);
    printf("refusals: %d passed, %d failed\n", passed, failures);
    return failures == 0 ? 0 : 1;
}
