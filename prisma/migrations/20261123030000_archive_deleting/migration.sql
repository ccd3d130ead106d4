-- AlterTable
ALTER TABLE "Archive" ADD COLUMN     "deletingAt" TIMESTAMP(3);
