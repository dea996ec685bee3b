/* bench_report.h: the table, CSV and JSON forms of a bench result, and the
 * comparison with a baseline. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench_report.h"
#include "bench_util.h"
#include "cli.h"

static const char *status_name(bench_status s) {
    static const char *names[] = {"ok", "skipped", "interrupted", "not run"};
    return (unsigned)s < 4 ? names[s] : "?";
}

/* Share of the probe's read bandwidth that generation achieves: the time the
 * bytes of one token would take at probe speed over the measured time. */
static double roofline(const bench_row *w) {
    return w->read_bw > 0 && w->bytes_per_token > 0 ? w->bytes_per_token * w->tok_s_mean / w->read_bw : 0.0;
}

static void print_header(FILE *f, const bench_result *r) {
    char size[32];
    fprintf(f, "model: %s (%s), %.2f M parameters, %s file, head %s; device %s; CPU %s; n_ctx %d\n", r->model_name,
            r->arch, (double)r->n_params / 1e6, bench_fmt_bytes(size, sizeof size, (double)r->file_bytes), r->head,
            r->device, r->cpu, r->n_ctx);
    if (r->delay_us > 0) fprintf(f, "test hook: BITNET_TEST_DELAY_US=%g adds a sleep per token\n", r->delay_us);
    if (r->profiled) fprintf(f, "note: measured with --profile on (timing every operation costs a little)\n");
}

static void print_row(FILE *f, const bench_row *w) {
    if (w->status == BENCH_SKIPPED || w->status == BENCH_NOT_RUN || w->reps == 0) {
        fprintf(f, "| %-6s | %7d | %5d | %s%s%s |\n", w->test, w->threads, w->batch, status_name(w->status),
                w->note[0] ? ": " : "", w->note);
        return;
    }
    char tps[48], reps[16];
    snprintf(tps, sizeof tps, "%.2f ± %.2f", w->tok_s_mean, w->tok_s_sd);
    snprintf(reps, sizeof reps, "%d%s", w->reps, w->status == BENCH_INTERRUPTED ? "*" : "");
    fprintf(f, "| %-6s | %7d | %5d | %20s | %4s |", w->test, w->threads, w->batch, tps, reps);
    if (w->is_gen) {
        fprintf(f, " %8.3f | %8.3f | %8.3f |", w->ms_p50, w->ms_p95, w->ms_p99);
        if (roofline(w) > 0) fprintf(f, " %7.1f%% |\n", 100.0 * roofline(w));
        else fprintf(f, " %8s |\n", "");
    } else {
        fprintf(f, " %8s | %8s | %8s | %8s |\n", "", "", "", "");
    }
}

/* Only a CPU run's threads should get their CPUs' time: on a GPU the host
 * thread mostly waits for the device, so a low share says nothing there. */
static int on_cpu(const bench_result *r) { return !strncmp(r->device, "cpu", 3); }

static int busy(const bench_result *r, const bench_row *w) {
    return on_cpu(r) && w->reps > 0 && w->cpu_share < BENCH_BUSY_SHARE;
}

/* Rows whose threads did not get their CPUs: other processes competed. */
static void print_busy(FILE *f, const bench_result *r) {
    for (int i = 0; i < r->n_rows; i++)
        if (busy(r, &r->rows[i]))
            fprintf(f, "warning: %s (threads %d) got %.0f%% of its threads' CPU time: other processes competed, "
                       "so its figures are not comparable\n", r->rows[i].test, r->rows[i].threads,
                    100.0 * r->rows[i].cpu_share);
}

static void print_memory(FILE *f, const bench_result *r) {
    char a[32], b[32], c[32], d[32], e[48] = "";
    if (!r->peak_rss) return;
    if (r->head_copy) snprintf(e, sizeof e, " + int8 head %s", bench_fmt_bytes(c, sizeof c, (double)r->head_copy));
    fprintf(f, "memory: peak RSS %s = mapped weights %s%s + KV cache %s (n_ctx %d) + base footprint %s\n",
            bench_fmt_bytes(a, sizeof a, (double)r->peak_rss), bench_fmt_bytes(b, sizeof b, (double)r->model_rss), e,
            bench_fmt_bytes(c, sizeof c, (double)r->kv_bytes), r->n_ctx,
            bench_fmt_bytes(d, sizeof d, (double)r->base_footprint));
}

/* One line of probe results per thread count (rows share them). */
static void print_bandwidth(FILE *f, const bench_result *r) {
    char a[32], list[256] = "";
    size_t used = 0;
    int seen[64], n_seen = 0;
    for (int i = 0; i < r->n_rows && used < sizeof list - 48; i++) {
        const bench_row *w = &r->rows[i];
        int dup = 0;
        for (int k = 0; k < n_seen; k++) dup |= seen[k] == w->threads;
        if (dup || w->read_bw <= 0 || n_seen == 64) continue;
        seen[n_seen++] = w->threads;
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%d thread%s %.2f GB/s", n_seen > 1 ? ", " : "",
                                 w->threads, w->threads == 1 ? "" : "s", w->read_bw / 1e9);
    }
    if (!n_seen) return;
    fprintf(f, "read bandwidth (probe over a %s buffer): %s\n", bench_fmt_bytes(a, sizeof a, (double)r->probe_bytes),
            list);
    for (int i = 0; i < r->n_rows; i++)
        if (r->rows[i].is_gen && roofline(&r->rows[i]) > 0) {
            const bench_row *w = &r->rows[i];
            fprintf(f, "roofline: %s reads %.1f MB per token (weights + mean KV cache); at %.2f tok/s that is "
                       "%.2f GB/s\n", w->test, w->bytes_per_token / 1e6, w->tok_s_mean,
                    w->bytes_per_token * w->tok_s_mean / 1e9);
            if (w->bytes_per_token < (double)r->llc_bytes)
                fprintf(f, "note: that is less than the %s last-level cache: the weights can stay in cache, so "
                           "the share of the memory bandwidth says little\n",
                        bench_fmt_bytes(a, sizeof a, (double)r->llc_bytes));
            break;
        }
}

void bench_print_table(FILE *f, const bench_result *r) {
    print_header(f, r);
    fprintf(f, "| test   | threads | batch | %20s | reps | %8s | %8s | %8s | roofline |\n", "tok/s (mean ± sd)",
            "p50 ms", "p95 ms", "p99 ms");
    fprintf(f, "|--------|--------:|------:|---------------------:|-----:|---------:|---------:|---------:|"
               "---------:|\n");
    for (int i = 0; i < r->n_rows; i++) print_row(f, &r->rows[i]);
    print_busy(f, r);
    print_memory(f, r);
    print_bandwidth(f, r);
    if (r->interrupted) fprintf(f, "interrupted: * marks a test cut short; rows after it did not run\n");
    for (int i = 0; i < r->n_rows; i++) {
        const bench_row *w = &r->rows[i];
        if (!w->has_profile || w->reps == 0) continue;
        fprintf(f, "profile of %s (threads %d, batch %d), %d repetition%s:\n", w->test, w->threads, w->batch, w->reps,
                w->reps == 1 ? "" : "s");
        bench_print_profile(f, &w->prof, w->is_gen ? w->sampling_s : -1.0, w->wall_s);
    }
}

void bench_print_csv(FILE *f, const bench_result *r) {
    fprintf(f, "model,params,file_bytes,device,test,threads,batch,status,reps,tok_s_mean,tok_s_sd,ms_p50,ms_p95,"
               "ms_p99,bytes_per_token,read_bw,roofline,peak_rss,base_footprint,cpu_share\n");
    for (int i = 0; i < r->n_rows; i++) {
        const bench_row *w = &r->rows[i];
        fprintf(f, "\"%s\",%lld,%llu,%s,%s,%d,%d,%s,%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.0f,%.0f,%.4f,%llu,%llu,%.3f\n",
                r->model_name, (long long)r->n_params, (unsigned long long)r->file_bytes, r->device, w->test,
                w->threads, w->batch, status_name(w->status), w->reps, w->tok_s_mean, w->tok_s_sd, w->ms_p50,
                w->ms_p95, w->ms_p99, w->bytes_per_token, w->read_bw, roofline(w), (unsigned long long)r->peak_rss,
                (unsigned long long)r->base_footprint, w->cpu_share);
    }
}

static cJSON *profile_json(const bench_row *w) {
    cJSON *p = cJSON_CreateObject();
    for (int c = 0; c < BITNET_OP_COUNT; c++) {
        cJSON *o = cJSON_AddObjectToObject(p, bitnet_op_class_name((bitnet_op_class)c));
        cJSON_AddNumberToObject(o, "seconds", w->prof.seconds[c]);
        cJSON_AddNumberToObject(o, "calls", (double)w->prof.calls[c]);
    }
    if (w->is_gen) cJSON_AddNumberToObject(p, "sampling_seconds", w->sampling_s);
    cJSON_AddNumberToObject(p, "wall_seconds", w->wall_s);
    return p;
}

static cJSON *row_json(const bench_row *w) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "test", w->test);
    cJSON_AddStringToObject(o, "kind", w->is_gen ? "tg" : "pp");
    cJSON_AddNumberToObject(o, "n_tokens", w->n_tokens);
    cJSON_AddNumberToObject(o, "threads", w->threads);
    cJSON_AddNumberToObject(o, "batch", w->batch);
    cJSON_AddStringToObject(o, "status", status_name(w->status));
    if (w->note[0]) cJSON_AddStringToObject(o, "note", w->note);
    cJSON_AddNumberToObject(o, "reps", w->reps);
    cJSON_AddNumberToObject(o, "cpu_share", w->cpu_share);
    cJSON_AddNumberToObject(o, "tok_s_mean", w->tok_s_mean);
    cJSON_AddNumberToObject(o, "tok_s_sd", w->tok_s_sd);
    if (w->is_gen) {
        cJSON_AddNumberToObject(o, "ms_p50", w->ms_p50);
        cJSON_AddNumberToObject(o, "ms_p95", w->ms_p95);
        cJSON_AddNumberToObject(o, "ms_p99", w->ms_p99);
        cJSON_AddNumberToObject(o, "bytes_per_token", w->bytes_per_token);
        cJSON_AddNumberToObject(o, "read_bw", w->read_bw);
        cJSON_AddNumberToObject(o, "roofline", roofline(w));
    }
    if (w->has_profile) cJSON_AddItemToObject(o, "profile", profile_json(w));
    return o;
}

int bench_write_json(FILE *f, const bench_result *r) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "bitnet_bench", 1);
    cJSON_AddStringToObject(root, "version", r->version);
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "path", r->model_path);
    cJSON_AddStringToObject(m, "name", r->model_name);
    cJSON_AddStringToObject(m, "arch", r->arch);
    cJSON_AddStringToObject(m, "head", r->head);
    cJSON_AddNumberToObject(m, "params", (double)r->n_params);
    cJSON_AddNumberToObject(m, "file_bytes", (double)r->file_bytes);
    cJSON *mc = cJSON_AddObjectToObject(root, "machine");
    cJSON_AddStringToObject(mc, "device", r->device);
    cJSON_AddStringToObject(mc, "cpu", r->cpu);
    cJSON *mem = cJSON_AddObjectToObject(root, "memory");
    cJSON_AddNumberToObject(mem, "n_ctx", r->n_ctx);
    cJSON_AddNumberToObject(mem, "peak_rss", (double)r->peak_rss);
    cJSON_AddNumberToObject(mem, "mapped_weights", (double)r->model_rss);
    cJSON_AddNumberToObject(mem, "head_copy", (double)r->head_copy);
    cJSON_AddNumberToObject(mem, "kv_cache", (double)r->kv_bytes);
    cJSON_AddNumberToObject(mem, "base_footprint", (double)r->base_footprint);
    cJSON_AddNumberToObject(root, "probe_bytes", (double)r->probe_bytes);
    cJSON_AddNumberToObject(root, "llc_bytes", (double)r->llc_bytes);
    cJSON_AddNumberToObject(root, "test_delay_us", r->delay_us);
    cJSON_AddBoolToObject(root, "profiled", r->profiled);
    cJSON_AddBoolToObject(root, "interrupted", r->interrupted);
    cJSON *rows = cJSON_AddArrayToObject(root, "results");
    for (int i = 0; i < r->n_rows; i++) cJSON_AddItemToArray(rows, row_json(&r->rows[i]));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return -1;
    int bad = fputs(text, f) < 0 || fputc('\n', f) == EOF;
    cJSON_free(text);
    return bad ? -1 : 0;
}

/* ------------------------------------------------------------ comparison -- */

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* The baseline row for (test, threads, batch) that completed, or NULL. */
static const cJSON *find_row(const cJSON *rows, const bench_row *w) {
    const cJSON *o;
    cJSON_ArrayForEach(o, rows) {
        if (!strcmp(str(o, "test"), w->test) && num(o, "threads") == w->threads && num(o, "batch") == w->batch &&
            !strcmp(str(o, "status"), "ok"))
            return o;
    }
    return NULL;
}

/* A difference counts only when it exceeds both the tolerance and the noise
 * of the two runs (their standard deviations added in quadrature). */
static const char *verdict(double base, double base_sd, double now, double now_sd, double tol, int *regressed) {
    double diff = now - base, noise = BENCH_NOISE_SDS * sqrt(base_sd * base_sd + now_sd * now_sd);
    *regressed = 0;
    if (diff < -tol * base && -diff > noise) return *regressed = 1, "REGRESSION";
    if (diff > tol * base && diff > noise) return "faster";
    if (diff < -tol * base) return "slower, within noise";
    return "same";
}

static void warn_mismatch(FILE *f, const cJSON *root, const bench_result *r) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mc = cJSON_GetObjectItemCaseSensitive(root, "machine");
    if (num(m, "params") != (double)r->n_params || strcmp(str(m, "name"), r->model_name))
        fprintf(f, "warning: the baseline is for model '%s' (%.0f parameters), not this one\n", str(m, "name"),
                num(m, "params"));
    if (strcmp(str(m, "head"), r->head))
        fprintf(f, "warning: the baseline ran with head '%s', this run with '%s'\n", str(m, "head"), r->head);
    if (strcmp(str(mc, "device"), r->device) || strcmp(str(mc, "cpu"), r->cpu))
        fprintf(f, "warning: the baseline ran on %s [%s], this run on %s [%s]\n", str(mc, "device"), str(mc, "cpu"),
                r->device, r->cpu);
}

static int compare_rows(FILE *f, const cJSON *rows, const bench_result *r, double tol, int *compared) {
    int regressions = 0;
    fprintf(f, "| test   | threads | batch | %20s | %20s | change  | verdict |\n", "baseline tok/s", "now tok/s");
    fprintf(f, "|--------|--------:|------:|---------------------:|---------------------:|--------:|---------|\n");
    for (int i = 0; i < r->n_rows; i++) {
        const bench_row *w = &r->rows[i];
        if (w->status != BENCH_OK) continue;
        const cJSON *b = find_row(rows, w);
        char was[48] = "-", now[48];
        snprintf(now, sizeof now, "%.2f ± %.2f", w->tok_s_mean, w->tok_s_sd);
        double bm = b ? num(b, "tok_s_mean") : NAN, bs = b ? num(b, "tok_s_sd") : NAN;
        if (!b || !(bm > 0) || !(bs >= 0)) {
            fprintf(f, "| %-6s | %7d | %5d | %20s | %20s | %7s | no baseline |\n", w->test, w->threads, w->batch, was,
                    now, "");
            continue;
        }
        int reg;
        const char *v = verdict(bm, bs, w->tok_s_mean, w->tok_s_sd, tol, &reg);
        snprintf(was, sizeof was, "%.2f ± %.2f", bm, bs);
        fprintf(f, "| %-6s | %7d | %5d | %20s | %20s | %+6.1f%% | %s%s |\n", w->test, w->threads, w->batch, was, now,
                100.0 * (w->tok_s_mean - bm) / bm, v,
                busy(r, w) || (on_cpu(r) && num(b, "cpu_share") < BENCH_BUSY_SHARE)
                ? " (busy machine: other processes took CPU time)" : "");
        regressions += reg;
        (*compared)++;
    }
    return regressions;
}

int bench_compare(FILE *f, const bench_result *r, const char *path, double tol) {
    size_t len;
    char *text = cli_read_file(path, &len);
    if (!text) return fprintf(stderr, "bitnet bench: cannot read the baseline %s\n", path), -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *rows = root ? cJSON_GetObjectItemCaseSensitive(root, "results") : NULL;
    if (!cJSON_IsArray(rows) || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "bitnet_bench"))) {
        cJSON_Delete(root);
        return fprintf(stderr, "bitnet bench: %s is not a `bitnet bench --json` result\n", path), -1;
    }
    fprintf(f, "comparison with baseline %s (a regression is slower by more than %.1f%% and by more than %.0f "
               "combined standard deviations):\n", path, 100.0 * tol, BENCH_NOISE_SDS);
    warn_mismatch(f, root, r);
    int compared = 0, regressions = compare_rows(f, rows, r, tol, &compared);
    cJSON_Delete(root);
    if (!compared)
        return fprintf(stderr, "bitnet bench: no test of this run is in the baseline %s (same -p/-n/-t/-b?)\n", path),
               -1;
    if (regressions) fprintf(f, "%d regression%s\n", regressions, regressions == 1 ? "" : "s");
    else fprintf(f, "no regression\n");
    return regressions;
}
