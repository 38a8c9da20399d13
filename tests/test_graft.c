/* test_graft.c - rsmoe init --experts and rs_gguf_graft: a model with another number of experts
 * receives the trained tensors of a 3-expert model where names, types and shapes agree. */
#include "test.h"

#include "formats/gguf.h"
#include "formats/gguf_copy.h"
#include "model/model.h"

#include <sys/stat.h>

static char g_dir[128];

static bool same_bytes(const rs_tensor *a, const rs_tensor *b) {
    return a && b && rs_tensor_nbytes(a) == rs_tensor_nbytes(b) && !memcmp(a->data, b->data, rs_tensor_nbytes(a));
}

TEST(init_experts_and_graft) {
    char a[200], b[200], o[200];
    snprintf(a, sizeof a, "%s/a.gguf", g_dir);
    snprintf(b, sizeof b, "%s/b.gguf", g_dir);
    snprintf(o, sizeof o, "%s/o.gguf", g_dir);
    rs_init_params ip = rs_init_default_params();
    ip.seed = 1;
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, a, NULL, NULL) == RSMOE_OK, "init a: %s", rsmoe_last_error());
    ip.seed = 2;
    ip.n_experts = 1;
    REQUIRE(rs_model_init_preset(rs_preset_find("test"), &ip, b, NULL, NULL) == RSMOE_OK, "init b: %s", rsmoe_last_error());
    ip.n_experts = RS_MAX_EXPERTS + 1;
    CHECK(rs_model_init_preset(rs_preset_find("test"), &ip, o, NULL, NULL) == RSMOE_ERR_INVALID_ARG, "too many experts refused");

    rs_graft_report r;
    REQUIRE(rs_gguf_graft(b, a, o, &r) == RSMOE_OK, "graft: %s", rsmoe_last_error());
    rs_gguf *ga, *gb, *go;
    REQUIRE(rs_gguf_open(a, &ga) == RSMOE_OK && rs_gguf_open(b, &gb) == RSMOE_OK && rs_gguf_open(o, &go) == RSMOE_OK, "open");
    CHECK(rs_gguf_get_u32_or(ga, "rsmoe.moe.expert_count", 0) == 3 && rs_gguf_get_u32_or(go, "rsmoe.moe.expert_count", 0) == 1,
          "the output keeps the 1-expert configuration");
    CHECK(rs_gguf_n_tensors(go) == rs_gguf_n_tensors(gb), "the output has the model's tensors (%lld vs %lld)",
          (long long)rs_gguf_n_tensors(go), (long long)rs_gguf_n_tensors(gb));
    int from_a = 0, from_b = 0, wrong = 0;
    for (int64_t i = 0; i < rs_gguf_n_tensors(go); i++) {
        const rs_tensor *t = rs_gguf_tensor(go, i);
        const rs_tensor *ta = rs_gguf_find_tensor(ga, t->name), *tb = rs_gguf_find_tensor(gb, t->name);
        bool fits = ta && ta->type == tb->type && !memcmp(ta->ne, tb->ne, sizeof ta->ne);
        if (!(fits ? same_bytes(t, ta) : same_bytes(t, tb))) wrong++;
        else if (fits) from_a++;
        else from_b++;
    }
    CHECK(wrong == 0, "%d tensors hold neither input's bytes as the rule says", wrong);
    CHECK(from_a == r.taken && from_b == r.absent + r.mismatched, "report %d/%d/%d vs counted %d/%d", r.taken, r.absent,
          r.mismatched, from_a, from_b);
    /* the seeds differ, so the shared weights really moved: the Q-Former and LLM are a's */
    CHECK(same_bytes(rs_gguf_find_tensor(go, "qf.query_embd"), rs_gguf_find_tensor(ga, "qf.query_embd")) &&
          !same_bytes(rs_gguf_find_tensor(gb, "qf.query_embd"), rs_gguf_find_tensor(ga, "qf.query_embd")),
          "qf.query_embd from the trained model");
    CHECK(same_bytes(rs_gguf_find_tensor(go, "router.gate.weight"), rs_gguf_find_tensor(gb, "router.gate.weight")),
          "the 1-expert router kept");
    CHECK(r.mismatched > 0 && r.unused > 0, "the router mismatches (%d), experts 1-2 unused (%d)", r.mismatched, r.unused);
    rs_gguf_close(ga);
    rs_gguf_close(gb);
    rs_gguf_close(go);
    rs_model *m = NULL;
    REQUIRE(rs_model_load(o, &m) == RSMOE_OK, "the result loads: %s", rsmoe_last_error());
    CHECK(m->moe.n_experts == 1, "1 expert");
    rs_model_free(m);
    CHECK(rs_gguf_graft(b, a, b, &r) == RSMOE_ERR_INVALID_ARG, "writing over an input refused");
    char missing[200];
    snprintf(missing, sizeof missing, "%s/missing.gguf", g_dir);
    CHECK(rs_gguf_graft(missing, a, o, &r) != RSMOE_OK && strstr(rsmoe_last_error(), "missing.gguf"), "missing input named: %s",
          rsmoe_last_error());
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rsmoe_test_graft_%d", (int)getpid());
    mkdir(g_dir, 0755);
    RUN(init_experts_and_graft);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd)) {}
    return test_summary();
}
