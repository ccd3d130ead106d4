-- AlterTable
ALTER TABLE "Repository" ADD COLUMN     "lastWebhookAt" TIMESTAMP(3);

-- AlterTable
ALTER TABLE "Branch" ADD COLUMN     "headChangedAt" TIMESTAMP(3),
ADD COLUMN     "syncTargetSha" TEXT;
