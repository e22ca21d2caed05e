/*
 * Error paths of the C ABI: NULL handles and arguments, invalid JSON configuration, bad values,
 * an unreachable coordinator. Each check prints one line; the exit status is the number of
 * failed checks. Built and run (also under valgrind) by scripts/test:
 *
 *   cargo build -p leasehold-c
 *   gcc -std=c11 -Wall -Wextra -Werror -I sdk-c/include sdk-c/tests/c/error_paths.c \
 *       target/debug/libleasehold_c.a -lgcc_s -lutil -lrt -lpthread -lm -ldl -o target/lh-error-paths
 *   target/lh-error-paths
 */
#include <stdio.h>
#include <string.h>

#include "leasehold.h"

static int failures = 0;

static const char *last_error(void) {
    static char buf[1024];
    lh_last_error(buf, sizeof buf);
    return buf;
}

/* Checks that `got` is `want` and that the last error message contains `needle`. */
static void expect(const char *what, lh_result got, lh_result want, const char *needle) {
    const char *msg = got == LH_OK ? "" : last_error();
    int ok = got == want && (needle == NULL || strstr(msg, needle) != NULL);
    printf("%s %s: %s (%s)\n", ok ? "ok  " : "FAIL", what, lh_result_name(got), msg);
    if (!ok) {
        printf("     wanted %s with a message containing \"%s\"\n", lh_result_name(want),
               needle ? needle : "");
        failures++;
    }
}

static void check(const char *what, int cond) {
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    if (!cond) failures++;
}

#define S(lit) lit, sizeof(lit) - 1

int main(void) {
    lh_worker *worker = (lh_worker *)0x1; /* sentinel: outputs are written only on success */
    lh_client *client = (lh_client *)0x1;
    lh_job *job = NULL;
    lh_bytes bytes = {0};
    lh_str str = {0};

    /* --- NULL arguments and handles ------------------------------------------------------- */
    expect("worker_new(NULL config)", lh_worker_new(NULL, 0, &worker), LH_NULL_ARGUMENT,
           "config_json is NULL");
    expect("worker_new(NULL out)", lh_worker_new(S("{}"), NULL), LH_NULL_ARGUMENT, "out is NULL");
    expect("worker_next(NULL worker)", lh_worker_next(NULL, 0, &job), LH_NULL_ARGUMENT,
           "worker is NULL");
    expect("worker_shutdown(NULL)", lh_worker_shutdown(NULL, 0, NULL), LH_NULL_ARGUMENT,
           "worker is NULL");
    expect("worker_drain(NULL)", lh_worker_drain(NULL), LH_NULL_ARGUMENT, "worker is NULL");
    expect("job_get_info(NULL job)", lh_job_get_info(NULL, NULL), LH_NULL_ARGUMENT, "job is NULL");
    expect("job_id(NULL job)", lh_job_id(NULL, &str), LH_NULL_ARGUMENT, "job is NULL");
    expect("job_complete(NULL job)", lh_job_complete(NULL, S("null")), LH_NULL_ARGUMENT,
           "job is NULL");
    expect("job_fail(NULL job)", lh_job_fail(NULL, NULL, 0, S("x"), true, -1), LH_NULL_ARGUMENT,
           "job is NULL");
    expect("job_cancelled(NULL job)", lh_job_cancelled(NULL), LH_NULL_ARGUMENT, "job is NULL");
    expect("client_new(NULL out)", lh_client_new(S("{\"url\":\"http://x\"}"), NULL),
           LH_NULL_ARGUMENT, "out is NULL");
    expect("client_get(NULL client)", lh_client_get(NULL, S("x"), NULL, &bytes), LH_NULL_ARGUMENT,
           "client is NULL");
    expect("cancel_fire(NULL)", lh_cancel_fire(NULL), LH_NULL_ARGUMENT, "cancel is NULL");
    expect("digest(NULL data, len 3)", lh_digest(NULL, 3, &bytes), LH_NULL_ARGUMENT,
           "data is NULL");
    check("outputs untouched after failures", worker == (lh_worker *)0x1 && job == NULL &&
                                                  bytes.data == NULL);
    /* The free functions accept NULL. */
    lh_worker_free(NULL);
    lh_job_free(NULL);
    lh_client_free(NULL);
    lh_cancel_free(NULL);
    lh_bytes_free(NULL);
    lh_bytes_free(&bytes);
    check("free functions accept NULL", 1);

    /* --- invalid JSON and invalid values -------------------------------------------------- */
    expect("worker_new(not JSON)", lh_worker_new(S("{not json"), &worker), LH_INVALID_JSON,
           "config_json is not valid JSON");
    expect("worker_new(unknown field)",
           lh_worker_new(S("{\"url\":\"http://127.0.0.1:1\",\"queues\":[\"q\"],\"qeues\":1}"),
                         &worker),
           LH_INVALID_JSON, "unknown field `qeues`");
    expect("worker_new(missing url)", lh_worker_new(S("{\"queues\":[\"q\"]}"), &worker),
           LH_INVALID_JSON, "missing field `url`");
    expect("worker_new(wrong type)",
           lh_worker_new(S("{\"url\":\"http://127.0.0.1:1\",\"queues\":\"q\"}"), &worker),
           LH_INVALID_JSON, "invalid type");
    expect("worker_new(prefetch not a bool)",
           lh_worker_new(S("{\"url\":\"http://127.0.0.1:1\",\"queues\":[\"q\"],\"prefetch\":\"yes\"}"),
                         &worker),
           LH_INVALID_JSON, "invalid type");
    expect("worker_new(no queues)",
           lh_worker_new(S("{\"url\":\"http://127.0.0.1:1\",\"queues\":[]}"), &worker),
           LH_INVALID_ARGUMENT, "queues");
    expect("worker_new(bad queue name)",
           lh_worker_new(S("{\"url\":\"http://127.0.0.1:1\",\"queues\":[\"no spaces\"]}"),
                         &worker),
           LH_INVALID_ARGUMENT, "queue name");
    expect("worker_new(bad url)",
           lh_worker_new(S("{\"url\":\"ftp://127.0.0.1\",\"queues\":[\"q\"]}"), &worker),
           LH_INVALID_ARGUMENT, "coordinator URL");
    expect("worker_new(concurrency 0)",
           lh_worker_new(S("{\"url\":\"http://127.0.0.1:1\",\"queues\":[\"q\"],\"concurrency\":0}"),
                         &worker),
           LH_INVALID_ARGUMENT, "concurrency");
    expect("worker_new(invalid UTF-8)", lh_worker_new(S("{\"url\":\"\xff\"}"), &worker),
           LH_INVALID_JSON, "config_json");
    check("worker untouched after failures", worker == (lh_worker *)0x1);
    expect("client_new(not JSON)", lh_client_new(S("[]"), &client), LH_INVALID_JSON,
           "config_json");
    expect("client_new(bad url)", lh_client_new(S("{\"url\":\"nope\"}"), &client),
           LH_INVALID_ARGUMENT, "coordinator URL");
    expect("artifact_name_check(\"../x\")", lh_artifact_name_check(S("../x")),
           LH_INVALID_ARGUMENT, "artifact name");
    expect("log_init(bad filter)", lh_log_init(S("[[[")), LH_INVALID_ARGUMENT, "bad log filter");

    /* --- the last-error buffer ------------------------------------------------------------ */
    lh_worker_new(S("{not json"), &worker);
    char small[8];
    size_t full = lh_last_error(small, sizeof small);
    check("last_error is cut to the buffer and NUL-terminated",
          full > sizeof small && strlen(small) == sizeof small - 1);
    check("last_error(NULL, 0) gives the length", lh_last_error(NULL, 0) == full);
    check("last_error_result", lh_last_error_result() == LH_INVALID_JSON);
    check("result_name(unknown)", strcmp(lh_result_name(12345), "LH_UNKNOWN") == 0);

    /* --- an unreachable coordinator ------------------------------------------------------- */
    /* Nothing listens on port 1. A worker keeps reconnecting (no error at creation); pulling
     * times out. A client gives up after its retries with LH_UNREACHABLE. */
    expect("worker_new(unreachable)",
           lh_worker_new(S("{\"url\":\"http://127.0.0.1:1\",\"queues\":[\"q\"],\"threads\":1}"),
                         &worker),
           LH_OK, NULL);
    expect("worker_next(unreachable, 300 ms)", lh_worker_next(worker, 300, &job), LH_TIMEOUT,
           "no job");
    check("no job written on timeout", job == NULL);
    expect("worker_next_cancellation(without cancel_events)",
           lh_worker_next_cancellation(worker, 0, &(uint64_t){0}), LH_INVALID_ARGUMENT,
           "cancel_events");
    size_t released = 99;
    expect("worker_shutdown(unreachable)", lh_worker_shutdown(worker, 0, &released), LH_OK, NULL);
    check("nothing released", released == 0);
    expect("worker_next after shutdown", lh_worker_next(worker, 1000, &job), LH_CLOSED, "no more");
    lh_worker_free(worker);

    expect("client_new(unreachable)",
           lh_client_new(S("{\"url\":\"http://127.0.0.1:1\",\"timeout_ms\":2000,"
                           "\"retry_policy\":{\"initial_ms\":10,\"multiplier\":2.0,"
                           "\"max_delay_ms\":50,\"max_attempts\":3}}"),
                         &client),
           LH_OK, NULL);
    expect("client_get(bad id)", lh_client_get(client, S("not-a-uuid"), NULL, &bytes),
           LH_INVALID_ARGUMENT, "not a UUID");
    expect("client_get(unreachable)",
           lh_client_get(client, S("0191b3a4-0000-7000-8000-000000000000"), NULL, &bytes),
           LH_UNREACHABLE, "cannot reach the coordinator");
    expect("client_enqueue(invalid job)", lh_client_enqueue(client, S("{\"queue\":\"q\"}"), NULL,
                                                            &bytes),
           LH_INVALID_JSON, "missing field `kind`");
    /* A misspelt job field is refused before anything is sent. */
    expect("client_enqueue(unknown field)",
           lh_client_enqueue(client, S("{\"queue\":\"q\",\"kind\":\"k\",\"max_atempts\":5}"), NULL,
                             &bytes),
           LH_INVALID_JSON, "unknown field `max_atempts`");
    expect("client_enqueue_many(unknown field)",
           lh_client_enqueue_many(client, S("[{\"kind\":\"k\"},{\"kind\":\"k\",\"prio\":1}]"), NULL,
                                  &bytes),
           LH_INVALID_JSON, "unknown field `prio`");
    expect("client_enqueue(deterministic_key not a bool)",
           lh_client_enqueue(client, S("{\"kind\":\"k\",\"deterministic_key\":1}"), NULL, &bytes),
           LH_INVALID_JSON, "deterministic_key");
    /* Operator calls: a misspelt filter and a bulk action without its justification are
     * refused before anything is sent; a NULL query is no filter (and reaches the network). */
    expect("client_list(unknown field)", lh_client_list(client, S("{\"sinse\":\"1h\"}"), NULL, &bytes),
           LH_INVALID_JSON, "unknown field `sinse`");
    expect("client_list(NULL query, unreachable)", lh_client_list(client, NULL, 0, NULL, &bytes),
           LH_UNREACHABLE, "cannot reach the coordinator");
    expect("client_replay_jobs(no reason)",
           lh_client_replay_jobs(client, S("{\"queue\":\"q\",\"ticket\":\"OPS-1\"}"), NULL, &bytes),
           LH_INVALID_ARGUMENT, "reason is required");
    expect("client_cancel_jobs(blank ticket)",
           lh_client_cancel_jobs(client, S("{\"reason\":\"why\",\"ticket\":\" \"}"), NULL, &bytes),
           LH_INVALID_ARGUMENT, "ticket is required");
    expect("client_cancel_jobs(NULL request)", lh_client_cancel_jobs(client, NULL, 0, NULL, &bytes),
           LH_NULL_ARGUMENT, "request_json");
    expect("client_slo(unknown field)", lh_client_slo(client, S("{\"windw\":\"1h\"}"), NULL, &bytes),
           LH_INVALID_JSON, "unknown field `windw`");
    lh_cancel *cancel = NULL;
    expect("cancel_new", lh_cancel_new(&cancel), LH_OK, NULL);
    expect("cancel_fire", lh_cancel_fire(cancel), LH_OK, NULL);
    expect("client_wait(fired cancel)",
           lh_client_wait(client, S("0191b3a4-0000-7000-8000-000000000000"), -1, cancel, &bytes),
           LH_CANCELLED, "cancelled");
    lh_cancel_free(cancel);
    check("no bytes written by failed calls", bytes.data == NULL);
    lh_client_free(client);

    /* --- the canonical algorithms work without a coordinator ------------------------------- */
    expect("digest(\"\")", lh_digest(NULL, 0, &bytes), LH_OK, NULL);
    check("digest of nothing",
          strcmp((const char *)bytes.data,
                 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    lh_bytes_free(&bytes);
    check("lh_bytes_free zeroes", bytes.data == NULL && bytes.len == 0);

    printf("%d failure(s)\n", failures);
    return failures;
}
