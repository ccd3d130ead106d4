-- AlterTable
ALTER TABLE "SyncRun" ADD COLUMN     "graphCommits" INTEGER,
ADD COLUMN     "graphStatus" TEXT;
