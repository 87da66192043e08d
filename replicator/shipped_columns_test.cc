#include "replicator/shipped_columns.h"

#include <gtest/gtest.h>

namespace marmot::replicator {
namespace {

using Columns = ShippedColumns::Columns;

TEST(ShippedColumnsTest, AChangeNotReadYetCarriesWhatItsRowWillHave) {
  ShippedColumns shipped;
  EXPECT_EQ(shipped.Carried("t", 1), std::nullopt);
  shipped.FirstLook("t", 0);
  shipped.Read("t", 5, {"id", "a"});
  EXPECT_EQ(shipped.Carried("t", 5), Columns({"id", "a"}));
  EXPECT_EQ(shipped.Carried("t", 6), std::nullopt);
  EXPECT_EQ(shipped.Carried("other", 1), std::nullopt);
}

TEST(ShippedColumnsTest, EachChangeCarriesTheColumnsItWasReadWith) {
  ShippedColumns shipped;
  shipped.FirstLook("t", 0);
  shipped.Read("t", 3, {"id", "a"});
  shipped.Read("t", 7, {"id", "a"});  // Same columns: one range.
  shipped.Read("t", 9, {"id", "a", "b"});
  shipped.Read("t", 12, {"id", "b"});
  EXPECT_EQ(shipped.Carried("t", 1), Columns({"id", "a"}));
  EXPECT_EQ(shipped.Carried("t", 7), Columns({"id", "a"}));
  EXPECT_EQ(shipped.Carried("t", 8), Columns({"id", "a", "b"}));
  EXPECT_EQ(shipped.Carried("t", 9), Columns({"id", "a", "b"}));
  EXPECT_EQ(shipped.Carried("t", 10), Columns({"id", "b"}));
  EXPECT_EQ(shipped.Carried("t", 13), std::nullopt);
}

TEST(ShippedColumnsTest, ChangesAnEarlierProcessMayHaveReadCarryNoKnownColumn) {
  ShippedColumns shipped;
  // The log held ids up to 10 when this process first looked at it: they may have been read
  // (and proposed) before a restart with other columns.
  shipped.FirstLook("t", 10);
  shipped.FirstLook("t", 20);                        // Only the first look counts.
  EXPECT_EQ(shipped.Carried("t", 4), std::nullopt);  // Not read again yet.
  shipped.Read("t", 6, {"id", "a"});
  EXPECT_EQ(shipped.Carried("t", 2), Columns());
  EXPECT_EQ(shipped.Carried("t", 6), Columns());
  EXPECT_EQ(shipped.Carried("t", 7), std::nullopt);
  shipped.Read("t", 15, {"id", "a"});
  EXPECT_EQ(shipped.Carried("t", 10), Columns());
  EXPECT_EQ(shipped.Carried("t", 11), Columns({"id", "a"}));
  EXPECT_EQ(shipped.Carried("t", 15), Columns({"id", "a"}));
}

TEST(ShippedColumnsTest, AReadWithoutALookCountsAsReadBeforeToo) {
  ShippedColumns shipped;
  shipped.Read("t", 4, {"id", "a"});
  EXPECT_EQ(shipped.Carried("t", 4), Columns());
  shipped.Read("t", 8, {"id", "a"});
  EXPECT_EQ(shipped.Carried("t", 5), Columns({"id", "a"}));
}

}  // namespace
}  // namespace marmot::replicator
