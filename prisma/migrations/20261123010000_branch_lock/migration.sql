-- AlterTable
ALTER TABLE "Branch" ADD COLUMN     "lockedBy" TEXT;
