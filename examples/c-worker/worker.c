/*
 * A Leasehold worker in plain C over libleasehold_c: it enqueues a few "square" jobs, works
 * them (checkpoint, progress, an artifact, one retried failure), checks the results through the
 * client, and shuts down cleanly. See README.md.
 *
 * Run with (from the repository root; a coordinator on :7070, e.g. `leasehold serve`):
 *
 *   cargo build -p leasehold-c
 *   gcc -std=c11 -Wall -Wextra -Werror -I sdk-c/include examples/c-worker/worker.c \
 *       target/debug/libleasehold_c.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -o target/c-worker
 *   target/c-worker http://127.0.0.1:7070 5
 *
 * Expected output (ids differ):
 *
 *   enqueued 5 jobs on queue c-demo
 *   job 01a203f1-6d9f-754d-9a6f-7a3f38a89acb n=1 attempt 1: 1 -> recorded (succeeded)
 *   ...
 *   job 01a203f1-72b3-74d2-aa84-70b178f790b1 n=3 attempt 1: failing on purpose (retry in 100 ms)
 *   ...
 *   job 01a203f1-72b3-74d2-aa84-70b178f790b1 n=3 attempt 2: 9 -> recorded (succeeded)
 *   checked 5 jobs: all succeeded with the right square and artifact
 *   worker shut down (0 released)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leasehold.h"

#define QUEUE "c-demo"
#define MAX_JOBS 100

/* Prints the failed call with the library's last error and returns 1. */
static int fail(const char *what, lh_result rc) {
    char msg[1024];
    lh_last_error(msg, sizeof msg);
    fprintf(stderr, "%s failed: %s: %s\n", what, lh_result_name(rc), msg);
    return 1;
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        lh_result rc_ = (call);                                                                    \
        if (rc_ != LH_OK) return fail(#call, rc_);                                                 \
    } while (0)

/* The same inside work(), which returns -1 on errors. */
#define TRY_JOB(call)                                                                              \
    do {                                                                                           \
        lh_result rc_ = (call);                                                                    \
        if (rc_ != LH_OK) {                                                                        \
            fail(#call, rc_);                                                                      \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static const char *ack_name(lh_ack ack) {
    switch (ack) {
    case LH_ACK_RECORDED: return "recorded";
    case LH_ACK_REJECTED: return "rejected";
    case LH_ACK_LEASE_LOST: return "not sent (lease lost)";
    case LH_ACK_LEASE_EXPIRED: return "not sent (lease expired)";
    case LH_ACK_RELEASED: return "not sent (released)";
    case LH_ACK_SESSION_CLOSED: return "not sent (worker closed)";
    case LH_ACK_INVALID: return "refused as invalid";
    case LH_ACK_RECORDED_AS_FAILURE: return "refused; recorded as a failure instead";
    default: return "unknown";
    }
}

/* Works one job; returns 1 when it completed, 0 when it failed on purpose, -1 on error. */
static int work(lh_job *job) {
    lh_job_info info;
    TRY_JOB(lh_job_get_info(job, &info));
    int n = 0;
    /* The payload is {"n":<int>} (compact JSON as the coordinator stores it). */
    if (sscanf(info.payload.data, "{\"n\":%d}", &n) != 1) {
        const char msg[] = "payload must be {\"n\": <integer>}";
        TRY_JOB(lh_job_fail(job, "bad_payload", 11, msg, sizeof msg - 1, false, -1));
        return -1;
    }
    printf("job %s n=%d attempt %" PRIu32 ": ", info.id.data, n, info.attempt);

    /* The first attempt of n == 3 fails, to show a retry with an explicit delay. */
    if (n == 3 && info.attempt == 1) {
        const char msg[] = "failing on purpose";
        TRY_JOB(lh_job_fail(job, NULL, 0, msg, sizeof msg - 1, true, 100));
        printf("failing on purpose (retry in 100 ms)\n");
        return 0;
    }

    char json[128];
    int len = snprintf(json, sizeof json, "{\"step\":\"squared\",\"n\":%d}", n);
    TRY_JOB(lh_job_checkpoint(job, json, (size_t)len));
    len = snprintf(json, sizeof json, "{\"percent\":50}");
    TRY_JOB(lh_job_progress(job, json, (size_t)len));

    char text[64];
    int text_len = snprintf(text, sizeof text, "%d squared is %d\n", n, n * n);
    lh_bytes artifact = {0};
    TRY_JOB(lh_job_put_artifact_buffer(job, "square.txt", 10, "text/plain", 10,
                                       (const uint8_t *)text, (size_t)text_len, NULL, &artifact));
    lh_bytes_free(&artifact);

    len = snprintf(json, sizeof json, "{\"square\":%d}", n * n);
    TRY_JOB(lh_job_complete(job, json, (size_t)len));

    /* Optional: wait for the coordinator's answer (outcomes are batched, so this is quick). */
    lh_outcome outcome;
    TRY_JOB(lh_job_outcome(job, 10000, &outcome));
    printf("%d -> %s (%.*s)\n", n * n, ack_name(outcome.ack), (int)outcome.state.len,
           outcome.state.data ? outcome.state.data : "");
    return outcome.ack == LH_ACK_RECORDED ? 1 : -1;
}

int main(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : "http://127.0.0.1:7070";
    int jobs = argc > 2 ? atoi(argv[2]) : 5;
    if (jobs < 1 || jobs > MAX_JOBS) {
        fprintf(stderr, "usage: %s [URL] [JOBS 1..%d]\n", argv[0], MAX_JOBS);
        return 2;
    }
    const char *log = getenv("LEASEHOLD_LOG");
    if (log) lh_log_init(log, strlen(log));

    char config[512];
    int len = snprintf(config, sizeof config, "{\"url\":\"%s\"}", url);
    lh_client *client = NULL;
    TRY(lh_client_new(config, (size_t)len, &client));

    /* Enqueue: {"queue":"c-demo","kind":"square","payload":{"n":i}} for i = 1..jobs. */
    char ids[MAX_JOBS][37];
    for (int i = 0; i < jobs; i++) {
        char job_json[128];
        int jl = snprintf(job_json, sizeof job_json,
                          "{\"queue\":\"" QUEUE "\",\"kind\":\"square\",\"payload\":{\"n\":%d}}",
                          i + 1);
        lh_bytes answer = {0};
        TRY(lh_client_enqueue(client, job_json, (size_t)jl, NULL, &answer));
        /* The answer is the job as JSON; its first field is "id". */
        const char *id = strstr((const char *)answer.data, "\"id\":\"");
        if (id == NULL) return fprintf(stderr, "no id in %s\n", (char *)answer.data), 1;
        memcpy(ids[i], id + 6, 36);
        ids[i][36] = '\0';
        lh_bytes_free(&answer);
    }
    printf("enqueued %d jobs on queue " QUEUE "\n", jobs);

    /* A lease of 10 s keeps the example comfortable under valgrind; heartbeats renew it. */
    len = snprintf(config, sizeof config,
                   "{\"url\":\"%s\",\"queues\":[\"" QUEUE "\"],\"concurrency\":4,"
                   "\"lease_ttl_ms\":10000,\"app_version\":\"c-worker/1\"}",
                   url);
    lh_worker *worker = NULL;
    TRY(lh_worker_new(config, (size_t)len, &worker));

    int completed = 0;
    while (completed < jobs) {
        lh_job *job = NULL;
        lh_result rc = lh_worker_next(worker, 30000, &job);
        if (rc == LH_TIMEOUT) return fprintf(stderr, "no job for 30 s\n"), 1;
        if (rc != LH_OK) return fail("lh_worker_next", rc);
        /* Count only this run's jobs: a queue left over from an earlier run is worked too. */
        lh_str id = {0};
        TRY(lh_job_id(job, &id));
        int ours = 0;
        for (int i = 0; i < jobs; i++) ours |= strcmp(ids[i], id.data) == 0;
        int done = work(job);
        lh_job_free(job);
        if (done < 0) return 1;
        if (ours) completed += done;
    }

    /* Check every job through the client. */
    for (int i = 0; i < jobs; i++) {
        lh_bytes answer = {0};
        TRY(lh_client_wait(client, ids[i], 36, 30000, NULL, &answer));
        const char *body = (const char *)answer.data;
        char want[64];
        snprintf(want, sizeof want, "\"result\":{\"square\":%d}", (i + 1) * (i + 1));
        int ok = strstr(body, "\"state\":\"succeeded\"") && strstr(body, want) &&
                 strstr(body, "\"name\":\"square.txt\"");
        if (!ok) return fprintf(stderr, "job %s is not as expected: %s\n", ids[i], body), 1;
        lh_bytes_free(&answer);
    }
    printf("checked %d jobs: all succeeded with the right square and artifact\n", jobs);

    size_t released = 0;
    TRY(lh_worker_shutdown(worker, 5000, &released));
    printf("worker shut down (%zu released)\n", released);
    lh_worker_free(worker);
    lh_client_free(client);
    return 0;
}
