#include "pane/metrics_text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

namespace marmot::pane {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTextTest, GaugesFromStatusAndCountersFromTheRegistry) {
  admin::v1::GetStatusResponse status;
  admin::v1::ShardStatus* s = status.add_shards();
  s->set_shard(3);
  s->set_leader(2);
  s->set_term(7);
  s->set_commit_index(120);
  s->set_applied_index(100);
  admin::v1::ShardStatus* halted = status.add_shards();
  halted->set_shard(4);
  halted->set_halted("no room for another dead letter");
  admin::v1::TableBacklog* b = status.add_backlog();
  b->set_table("order");
  b->set_pending_changes(5);
  status.set_dead_letters(1);
  prometheus::Registry registry;
  prometheus::BuildCounter()
      .Name("marmot_test_total")
      .Help("t")
      .Register(registry)
      .Add({})
      .Increment(4);

  std::string text = RenderMetrics(status, &registry);
  EXPECT_THAT(text, HasSubstr("# TYPE marmot_shard_leader gauge"));
  EXPECT_THAT(text, HasSubstr("marmot_shard_leader{shard=\"3\"} 2"));
  EXPECT_THAT(text, HasSubstr("marmot_shard_apply_lag_entries{shard=\"3\"} 20"));
  EXPECT_THAT(text, HasSubstr("marmot_shard_halted{shard=\"3\"} 0"));
  EXPECT_THAT(text, HasSubstr("marmot_shard_halted{shard=\"4\"} 1"));
  EXPECT_THAT(text, HasSubstr("marmot_changelog_backlog{table=\"order\"} 5"));
  EXPECT_THAT(text, HasSubstr("marmot_dead_letters 1"));
  EXPECT_THAT(text, HasSubstr("marmot_test_total 4"));
}

}  // namespace
}  // namespace marmot::pane
